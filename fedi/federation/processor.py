"""Inbox worker: claims stored activities in batches and runs the handler for each.

A batch is ONE transaction, its items run in the order of their ids (a Create before a Like
of it). A handler's changes, the deliveries they cause and the item's `done` mark commit
together with the rest of the batch, so a crash mid-batch means its items are claimed again
later (after their lease) and nothing is half-applied. One item's failure undoes that item
alone; its outcome is recorded in the batch's transaction.

How an item is undone: items first run with no savepoint (a SAVEPOINT and its RELEASE were two
of a Like's seven statements, and SQLAlchemy's nested transaction cost as much again in
Python). An item that fails before it wrote anything (most refusals: a ban, a post we do not
know, a duplicate) leaves nothing to undo. One that fails after a write, or with a database
error, leaves the transaction holding part of it: the transaction is rolled back and the same
items run again with a SAVEPOINT each, whose rollback undoes the failed item alone.

Outcomes of an item: `done` (handled, or ignored with a reason); released for a retry with a
growing pause (a FediError, e.g. a remote fetch failed); released at once when the database
connection was lost mid-batch: every item of the batch, since none of it committed (each was
answered 202: it must not be lost to an outage); `failed` only when the body cannot be read or
a handler has a bug. A batch that breaks for any other reason is processed again one item per
transaction, so a poison item cannot hold the others back.

No item waits on a remote server inside the transaction: an item that needs a fetch has its
savepoint rolled back, the items before it commit, the fetch is made with nothing open, and
the item runs again in the next transaction (fedi.federation.fetch_later).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, String, bindparam, event, func, select, update
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi.activitypub.parse import IncomingActivity, host_of, parse_activity_body
from fedi.delivery.queue import revive_hosts
from fedi.delivery.worker import brief
from fedi.errors import FediError, ValidationError
from fedi.federation.fetch_later import FetchLater, fetching_between_transactions
from fedi.federation.receive import HostPolicy, allow_all
from fedi.federation.resolve import ActorResolver
from fedi.handlers import Handler, HandlerContext, Ignored
from fedi.store.memo import batch_memo, memo_of
from fedi.store.models import Actor, Group, InboxItem
from fedi.urls import Urls

log = logging.getLogger(__name__)

LEASE_SECONDS = 120.0
BATCH_SIZE = 100
MAX_ATTEMPTS = 5
# After a lost connection the item is tried again 1, 2, 4 … 64 s later; a "connection" error
# that persists that long (on SQLite a schema bug raises OperationalError too) is a failure.
RELEASE_PAUSE = 1.0
MAX_CONNECTION_ATTEMPTS = 50
# SQLSTATE classes of a lost connection or a server going away (08: connection exception,
# 57P: operator intervention, e.g. pg_terminate_backend, shutdown, starting up).
_CONNECTION_STATES = ("08", "57P")
_LOST = "database connection lost; retrying"


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


def _hold_actor(held: list[Actor | Group], loaded: object) -> None:
    if isinstance(loaded, Actor | Group):
        held.append(loaded)


def _drop_notes(info: dict[Any, Any], noted: dict[Any, int]) -> None:
    """Lists in session.info are notes for after the commit (live events): a failed item's
    go with it. `noted`: each list's length before the item."""
    for key, value in list(info.items()):
        if isinstance(value, list):
            del value[noted.get(key, 0):]


def _unwritten(session: AsyncSession) -> bool:
    """Whether the session holds changes not yet sent to the database."""
    sync = session.sync_session
    return bool(sync.new or sync.dirty or sync.deleted)


class BatchLost(Exception):
    """A savepoint could not be rolled back: the batch's transaction is gone."""


class _Tainted(Exception):
    """An item run without a savepoint failed after it wrote (or with a database error):
    the transaction holds part of it, so it is rolled back and run again with savepoints."""


@dataclass(frozen=True)
class _Item:
    id: int
    body: str
    attempts: int
    uri: str
    actor: str


@dataclass(frozen=True)
class Outcome:
    state: str
    error: str | None
    retry_at: float | None = None


# Every outcome in one executemany; claimed_until changes only for a retry.
_RECORD = (
    update(InboxItem.__table__)  # type: ignore[arg-type]
    .where(InboxItem.__table__.c.id == bindparam("item_id"))
    .values(
        state=bindparam("new_state", type_=String),
        error=bindparam("new_error", type_=String),
        processed_at=bindparam("at", type_=Float),
        claimed_until=func.coalesce(bindparam("retry_at", type_=Float),
                                    InboxItem.__table__.c.claimed_until),
    )
)


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
        self._sqlite = sessionmaker.kw["bind"].dialect.name == "sqlite"

    async def run_once(self, limit: int = BATCH_SIZE) -> int:
        """Process up to `limit` due items in one transaction; return how many were claimed."""
        claimed = await self._claim(limit)
        if claimed:
            await self._process_batch(claimed)
        return len(claimed)

    async def _claim(self, limit: int) -> list[_Item]:
        moment = self._clock()
        async with self._sessionmaker() as session, session.begin():
            query = (
                select(InboxItem.id, InboxItem.body, InboxItem.attempts,
                       InboxItem.activity_uri, InboxItem.actor_uri)
                .where(InboxItem.state == "new", InboxItem.claimed_until < moment)
                .order_by(InboxItem.id)
                .limit(limit)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            if rows:
                await session.execute(
                    update(InboxItem)
                    .where(InboxItem.id.in_([row.id for row in rows]))
                    .values(claimed_until=moment + self._lease, attempts=InboxItem.attempts + 1)
                )
                # These hosts talked to us (each item passed the inbox's signature check):
                # a host marked gone or paused by the breaker gets its deliveries back.
                await revive_hosts(session, {host_of(row.actor_uri) for row in rows} - {""},
                                   moment)
        return [_Item(row.id, row.body, row.attempts + 1, row.activity_uri, row.actor_uri)
                for row in rows]

    async def _process_batch(self, items: Sequence[_Item]) -> None:
        rest, one_by_one = list(items), False
        # Fetches between transactions take time: once half the lease is gone, what is left
        # goes back to the queue rather than wait for another fetch (the batch's first fetch
        # is always made, so every batch gets further).
        give_back_at = self._clock() + self._lease / 2
        with fetching_between_transactions() as fetched:
            while rest:
                chunk = rest[:1] if one_by_one else rest
                taken, later = await self._transaction(chunk)
                if taken == 0 and later is None:
                    one_by_one = True  # the batch broke: again, one item per transaction
                    continue
                rest = rest[taken:]
                if later is not None:
                    if fetched.made and self._clock() > give_back_at:
                        await self._give_back(rest)
                        return
                    # With no transaction open (fedi.federation.fetch_later); the item that
                    # needed it runs again next, in a new transaction.
                    await fetched.make(later)

    async def _transaction(
        self, items: Sequence[_Item], savepoints: bool = False
    ) -> tuple[int, FetchLater | None]:
        """Run `items` in one transaction, in order, until one needs a remote fetch; each in
        a savepoint of its own if `savepoints`, else none unless one fails after a write.

        Returns how many items it settled (recorded, or released after a failure) and the
        fetch the next one needs; (0, None) when the batch broke and none of it committed."""
        outcomes: dict[int, Outcome] = {}
        later: FetchLater | None = None
        try:
            # Asked before the transaction: the policy reads with a connection of its own
            # (every second), and on SQLite one taken while the batch held the write lock
            # waited for a pool full of requests waiting for that lock: all stuck for the
            # busy timeout (30 s; bench.serve_fanout's join, 16 Follows at a time).
            refusals = {host: await self._host_policy(host)
                        for host in {host_of(item.actor) for item in items}}
            async with self._sessionmaker() as session:
                if self._sqlite:
                    # pysqlite begins a transaction only before a write, so the first
                    # SAVEPOINT would be the outermost and its RELEASE would commit that
                    # item alone, before its `done` mark: one transaction, begun here.
                    # IMMEDIATE: begun as a reader, the batch could not write once the inbox
                    # had committed a row after its first read ("database is locked" at
                    # once, not after the busy timeout), and the whole batch was lost.
                    await (await session.connection()).exec_driver_sql("BEGIN IMMEDIATE")
                # The session holds loaded objects weakly: a handler's actors would be
                # gone by the next item, and every session.get(Actor, id) a query again
                # (bench.processing: six per Like); so was a group's settings for every
                # Create. Both change only through the ORM, so held ones stay true for the
                # batch.
                held: list[Actor | Group] = []
                event.listen(session.sync_session, "loaded_as_persistent",
                             lambda _s, loaded: _hold_actor(held, loaded))
                # What items read again and again (a group's roster and members), read once
                # per batch; a write drops what it changes (fedi.store.memo).
                async with batch_memo(session) as memo:
                    # With no savepoints a failed write undoes the whole transaction, so
                    # writes may wait for the batch's end (a post's like count, once).
                    memo.defers_writes = not savepoints
                    memo.actors = frozenset(item.actor for item in items)
                    memo.activities = frozenset(item.uri for item in items)
                    await self._resolver.preload(session, set(memo.actors))
                    for item in items:
                        try:
                            outcomes[item.id] = await self._process(
                                session, item, refusals, savepoints)
                        except FetchLater as needed:
                            later = needed
                            break
                    await memo.finish(session)
                await self._record(session, outcomes)
                await session.commit()
            return len(outcomes), later
        except _Tainted as tainted:
            log.debug("inbox batch of %d runs again with savepoints (%s)", len(items),
                      brief(tainted.__cause__ or tainted))
            return await self._transaction(items, savepoints=True)
        except Exception as exc:
            lost = connection_lost(exc)
            if len(items) == 1 or lost:
                # Nothing of the batch committed: every item is released, never failed.
                log.warning("inbox batch of %d lost (%s%s); its items will be processed again",
                            len(items), "database connection lost: " if lost else "",
                            brief(exc))
                await self._release(items)
                return len(items), None
            log.warning("inbox batch of %d broke (%s); processing its items one by one",
                        len(items), brief(exc))
            return 0, None

    async def _process(
        self, session: AsyncSession, item: _Item, refusals: dict[str, str | None],
        savepoints: bool,
    ) -> Outcome:
        """Run one item (in its own savepoint if `savepoints`); its outcome. `refusals`: the
        host policy's answer for the items' actors' hosts."""
        try:
            # The inbox's own parser: a body it refused would not be here, and one it
            # accepted reads the same way now (SECURITY 21).
            activity = parse_activity_body(item.body)
        except ValidationError as exc:
            return Outcome("failed", exc.reason)  # retrying cannot help
        try:
            host = host_of(activity.actor)
            # The inbox stored the body's actor as the item's: asked already.
            refusal = refusals[host] if host in refusals else await self._host_policy(host)
            if refusal is not None:
                raise Ignored(f"refused: {refusal}")
            handler = self._handlers.get(activity.type)
            if handler is None:
                raise Ignored(f"no handler for {activity.type}")
            context = HandlerContext(session, self._urls, self._resolver)
            if savepoints:
                await self._in_savepoint(session, handler, context, activity)
            else:
                await self._undone_if_clean(session, handler, context, activity)
            return Outcome("done", context.outcome)
        except (BatchLost, FetchLater, _Tainted):
            raise
        except Ignored as exc:
            return Outcome("done", exc.reason)
        except FediError as exc:
            log.info("inbox item %s (%s) failed: %s", item.id, item.uri, exc.reason)
            if item.attempts >= MAX_ATTEMPTS:
                return Outcome("failed", exc.reason)
            # Released for a later retry, with a growing pause.
            return Outcome("new", exc.reason, self._clock() + 30.0 * 2**item.attempts)
        except Exception as exc:
            if connection_lost(exc):
                # The savepoint rolled back, so the transaction lives (SQLite's "database is
                # locked"): only this item is released for an early retry.
                return self._released(item, exc)
            # A bug in a handler: one line, no traceback (it could quote SQL parameters).
            log.error("inbox item %s (%s) crashed: %s", item.id, item.uri, brief(exc))
            return Outcome("failed", f"internal error: {brief(exc)}"[:500])

    async def _undone_if_clean(
        self, session: AsyncSession, handler: Handler, context: HandlerContext,
        activity: IncomingActivity,
    ) -> None:
        """Run the handler with no savepoint; a failure that wrote nothing is undone here (its
        notes and what it read), any other raises _Tainted."""
        memo = memo_of(session)
        if memo is None:  # no way to tell whether it wrote
            await self._in_savepoint(session, handler, context, activity)
            return
        info = session.sync_session.info
        noted = {key: len(value) for key, value in info.items() if isinstance(value, list)}
        before = memo.mark()
        try:
            await handler(context, activity)
            # What the item left in the session goes out now (a post whose id was taken
            # ahead waits for it, fedi.store.reserved_ids): the next item starts clean, and
            # its failure is told apart from this one's writes. (Asked first: a flush with
            # nothing to do still costs a Like a few percent.)
            if _unwritten(session):
                await session.flush()
        except Exception as exc:
            if not isinstance(exc, FediError | FetchLater) and connection_lost(exc):
                # The transaction is gone (or going): every item of the batch is released.
                # (A refusal or a failed fetch is the item's outcome, whatever it came from.)
                raise BatchLost(brief(exc)) from exc
            if memo.mark() != before or _unwritten(session) or isinstance(exc, SQLAlchemyError):
                # A write went out or waits in the session, or the database refused a
                # statement (PostgreSQL then refuses the rest of the transaction), or the
                # session is in a state only a rollback ends.
                raise _Tainted(brief(exc)) from exc
            _drop_notes(info, noted)
            memo.clear()  # what it read stays true, but drop it as a rollback would
            raise

    async def _in_savepoint(
        self, session: AsyncSession, handler: Handler, context: HandlerContext,
        activity: IncomingActivity,
    ) -> None:
        # Lists in session.info are notes for after the commit (live events); a rolled-back
        # item's notes go with it.
        info = session.sync_session.info
        noted = {key: len(value) for key, value in info.items() if isinstance(value, list)}
        savepoint = await session.begin_nested()
        try:
            await handler(context, activity)
            await savepoint.commit()
        except Exception:
            try:
                await savepoint.rollback()
            except Exception as lost:
                raise BatchLost(brief(lost)) from lost
            _drop_notes(info, noted)
            # What the item read may be what it wrote and has now rolled back.
            memo = memo_of(session)
            if memo is not None:
                memo.clear()
            # Objects the item changed are expired now; the next item loads what it needs
            # afresh instead of touching them outside the session's I/O.
            session.expunge_all()
            raise

    def _released(self, item: _Item, exc: BaseException) -> Outcome:
        if item.attempts >= MAX_CONNECTION_ATTEMPTS:
            log.error("inbox item %s (%s): database errors %d times: %s", item.id, item.uri,
                      item.attempts, brief(exc))
            return Outcome("failed", f"internal error: {brief(exc)}"[:500])
        # Not the handler's fault: the item stays `new`, released for an early retry; if the
        # database is still away, its lease brings it back.
        log.warning("inbox item %s: database connection lost (%s); it will be processed "
                    "again", item.id, brief(exc))
        pause = RELEASE_PAUSE * 2 ** min(item.attempts - 1, 6)
        return Outcome("new", _LOST, self._clock() + pause)

    async def _record(self, session: AsyncSession, outcomes: dict[int, Outcome]) -> None:
        if not outcomes:
            return
        moment = self._clock()
        await session.execute(_RECORD, [
            {"item_id": item_id, "new_state": o.state, "new_error": o.error, "at": moment,
             "retry_at": o.retry_at}
            for item_id, o in outcomes.items()
        ])

    async def _give_back(self, items: Sequence[_Item]) -> None:
        """Items not yet run, due again at once; this claim was not an attempt."""
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(InboxItem)
                .where(InboxItem.id.in_([item.id for item in items]))
                .values(claimed_until=self._clock(), attempts=InboxItem.attempts - 1)
            )

    async def _release(self, items: Sequence[_Item]) -> None:
        """Every item of a batch that did not commit, released for an early retry."""
        outcomes: dict[int, Outcome] = {}
        for item in items:
            pause = RELEASE_PAUSE * 2 ** min(item.attempts - 1, 6)
            outcomes[item.id] = (
                Outcome("failed", "internal error: database errors on every attempt")
                if item.attempts >= MAX_CONNECTION_ATTEMPTS
                else Outcome("new", _LOST, self._clock() + pause)
            )
        with contextlib.suppress(Exception):  # still away: the lease brings them back
            async with self._sessionmaker() as session, session.begin():
                await self._record(session, outcomes)
