"""Inbox worker: claims stored activities and runs the handler for each, one transaction each.

A handler's changes, the deliveries they cause and the item's `done` mark commit together, so
a crash mid-item means the item is claimed again later and nothing is half-applied.

Outcomes of an item: `done` (handled, or ignored with a reason); released for a retry with a
growing pause (a FediError, e.g. a remote fetch failed); released at once when the database
connection was lost mid-item (the activity was answered 202: it must not be lost to an
outage); `failed` only when the body cannot be read or a handler has a bug.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi.activitypub.parse import host_of, parse_activity_body
from fedi.delivery.queue import revive_hosts
from fedi.delivery.worker import brief
from fedi.errors import FediError, ValidationError
from fedi.federation.receive import HostPolicy, allow_all
from fedi.federation.resolve import ActorResolver
from fedi.handlers import Handler, HandlerContext, Ignored
from fedi.store.models import InboxItem
from fedi.urls import Urls

log = logging.getLogger(__name__)

LEASE_SECONDS = 120.0
MAX_ATTEMPTS = 5
# After a lost connection the item is tried again 1, 2, 4 … 64 s later; a "connection" error
# that persists that long (on SQLite a schema bug raises OperationalError too) is a failure.
RELEASE_PAUSE = 1.0
MAX_CONNECTION_ATTEMPTS = 50
# SQLSTATE classes of a lost connection or a server going away (08: connection exception,
# 57P: operator intervention, e.g. pg_terminate_backend, shutdown, starting up).
_CONNECTION_STATES = ("08", "57P")


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the database or the connection to it failed, not the handler: the
    item is then tried again, never marked failed. Follows the exception's chain, since
    drivers raise their own errors and SQLAlchemy wraps some of them."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, OperationalError | InterfaceError | DisconnectionError
                      | PoolTimeout | ConnectionError | TimeoutError | OSError):
            return True
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_CONNECTION_STATES):
            return True
        if type(current).__name__ in ("ConnectionDoesNotExistError", "InterfaceError"):
            return True  # asyncpg's, raised unwrapped on a connection it knows is closed
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


class InboxProcessor:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        resolver: ActorResolver,
        urls: Urls,
        handlers: dict[str, Handler],
        clock: Callable[[], float] = time.time,
        host_policy: HostPolicy = allow_all,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        # Checked again here: a domain blocked while its activity waited in the queue.
        self._host_policy = host_policy
        self._sessionmaker = sessionmaker
        self._resolver = resolver
        self._urls = urls
        self._handlers = handlers
        self._clock = clock
        self._lease = lease_seconds
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
                    .values(claimed_until=moment + self._lease, attempts=InboxItem.attempts + 1)
                )
                # These hosts talked to us (each item passed the inbox's signature check):
                # a host marked gone or paused by the breaker gets its deliveries back.
                senders = (await session.execute(
                    select(InboxItem.actor_uri).where(InboxItem.id.in_(ids)).distinct()
                )).scalars()
                await revive_hosts(session, {host_of(uri) for uri in senders} - {""}, moment)
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
                with contextlib.suppress(Exception):  # the connection may be gone already
                    await session.rollback()
                if connection_lost(exc) and attempts < MAX_CONNECTION_ATTEMPTS:
                    # Not the handler's fault: the item stays `new`. Released for an early
                    # retry; if the database is still away, its lease brings it back.
                    log.warning("inbox item %s: database connection lost (%s); it will be "
                                "processed again", item_id, brief(exc))
                    pause = RELEASE_PAUSE * 2 ** min(attempts - 1, 6)
                    await self._finish(item_id, "new", "database connection lost; retrying",
                                       self._clock() + pause)
                    return
                # A bug in a handler: one line, no traceback (it could quote SQL parameters).
                log.error("inbox item %s (%s) crashed: %s", item_id, uri, brief(exc))
                await self._finish(item_id, "failed", f"internal error: {brief(exc)}"[:500],
                                   None)

    async def _finish(
        self, item_id: int, state: str, error: str, retry_at: float | None
    ) -> None:
        values: dict[str, object] = {"state": state, "error": error, "processed_at": self._clock()}
        if retry_at is not None:
            values["claimed_until"] = retry_at
        async with self._sessionmaker() as session, session.begin():
            await session.execute(update(InboxItem).where(InboxItem.id == item_id).values(**values))
