"""Inbox worker: claims stored activities and runs the handler for each, one transaction each.

A handler's changes, the deliveries they cause and the item's `done` mark commit together, so
a crash mid-item means the item is claimed again later and nothing is half-applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi.activitypub.parse import host_of, parse_activity_body
from fedi.errors import FediError, ValidationError
from fedi.federation.receive import HostPolicy, allow_all
from fedi.federation.resolve import ActorResolver
from fedi.handlers import Handler, HandlerContext, Ignored
from fedi.store.models import InboxItem
from fedi.urls import Urls

log = logging.getLogger(__name__)

LEASE_SECONDS = 120.0
MAX_ATTEMPTS = 5


class InboxProcessor:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        resolver: ActorResolver,
        urls: Urls,
        handlers: dict[str, Handler],
        clock: Callable[[], float] = time.time,
        host_policy: HostPolicy = allow_all,
    ) -> None:
        # Checked again here: a domain blocked while its activity waited in the queue.
        self._host_policy = host_policy
        self._sessionmaker = sessionmaker
        self._resolver = resolver
        self._urls = urls
        self._handlers = handlers
        self._clock = clock
        self._postgres = sessionmaker.kw["bind"].dialect.name == "postgresql"

    async def run_once(self, limit: int = 50) -> int:
        """Process up to `limit` due items; return how many were claimed."""
        claimed = await self._claim(limit)
        for item_id in claimed:
            await self._process(item_id)
        return len(claimed)

    async def _claim(self, limit: int) -> list[int]:
        moment = self._clock()
        async with self._sessionmaker() as session, session.begin():
            query = (
                select(InboxItem.id)
                .where(InboxItem.state == "new", InboxItem.claimed_until < moment)
                .order_by(InboxItem.id)
                .limit(limit)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.execute(query)).scalars())
            if ids:
                await session.execute(
                    update(InboxItem)
                    .where(InboxItem.id.in_(ids))
                    .values(claimed_until=moment + LEASE_SECONDS, attempts=InboxItem.attempts + 1)
                )
        return ids

    async def _process(self, item_id: int) -> None:
        async with self._sessionmaker() as session:
            item = await session.get(InboxItem, item_id)
            if item is None or item.state != "new":
                return
            body, attempts, uri = item.body, item.attempts, item.activity_uri
            try:
                # The inbox's own parser: a body it refused would not be here, and one it
                # accepted reads the same way now (SECURITY 21).
                activity = parse_activity_body(body)
            except ValidationError as exc:
                await session.rollback()
                await self._finish(item_id, "failed", exc.reason, None)  # retrying cannot help
                return
            try:
                refusal = await self._host_policy(host_of(activity.actor))
                if refusal is not None:
                    raise Ignored(f"refused: {refusal}")
                handler = self._handlers.get(activity.type)
                if handler is None:
                    raise Ignored(f"no handler for {activity.type}")
                context = HandlerContext(session, self._urls, self._resolver)
                await handler(context, activity)
                item.state = "done"
                item.error = context.outcome
                item.processed_at = self._clock()
                await session.commit()
                return
            except Ignored as exc:
                await session.rollback()
                await self._finish(item_id, "done", exc.reason, None)
            except FediError as exc:
                await session.rollback()
                log.info("inbox item %s (%s) failed: %s", item_id, uri, exc.reason)
                if attempts >= MAX_ATTEMPTS:
                    await self._finish(item_id, "failed", exc.reason, None)
                else:
                    # Released for a later retry, with a growing pause.
                    retry_at = self._clock() + 30.0 * 2**attempts
                    await self._finish(item_id, "new", exc.reason, retry_at)
            except Exception as exc:
                await session.rollback()
                log.exception("inbox item %s (%s) crashed", item_id, uri)
                await self._finish(item_id, "failed", f"internal error: {exc!r}"[:500], None)

    async def _finish(
        self, item_id: int, state: str, error: str, retry_at: float | None
    ) -> None:
        values: dict[str, object] = {"state": state, "error": error, "processed_at": self._clock()}
        if retry_at is not None:
            values["claimed_until"] = retry_at
        async with self._sessionmaker() as session, session.begin():
            await session.execute(update(InboxItem).where(InboxItem.id == item_id).values(**values))
