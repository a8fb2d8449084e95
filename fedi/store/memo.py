"""A read memo for one transaction of many items (the inbox processor's batch).

What every item of a batch reads again (a group's roster, its members' addresses, a post's
named people, an actor by id) is read once per batch. Each entry names the tables it was read
from; an INSERT, UPDATE or DELETE of one of those tables on the batch's connection drops it.
The writes are seen where the statements go out (ORM flushes, bulk statements and raw SQL
alike), so a Follow, a ban or a role given by an earlier item is seen by the next one. The
owner clears the memo when an item fails: nothing read inside a failed item outlives it. The
memo also counts the statements that may have written and those that failed (`mark`): an item
that failed with neither left nothing to roll back.

Only a session that installed a memo has one; everywhere else the same functions query as
they always did. What another process commits during a batch is seen from the next batch on
(on SQLite a transaction reads one snapshot anyway).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager, suppress
from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
Deferred = Callable[[AsyncSession, dict[Any, Any]], Awaitable[None]]

_KEY = "fedi.batch_memo"
_WRITE = re.compile(
    r'\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)', re.IGNORECASE
)


# Statements that change no row, as SQLAlchemy spells them.
_UNCHANGING = ("SELECT", "SAVEPOINT", "RELEASE SAVEPOINT")


class BatchMemo:
    def __init__(self) -> None:
        self._entries: dict[Hashable, Any] = {}
        # Table → the keys read from it: a write finds what it drops without walking every
        # entry (a batch of 100 posts keeps hundreds, and every item writes several times).
        self._by_table: dict[str, set[Hashable]] = {}
        # Statements other than reads (and savepoints) seen so far, and statements the
        # database refused (on PostgreSQL the transaction then refuses everything after).
        self.statements_written = 0
        self.statements_failed = 0
        # Writes put off to the end of the batch (`deferred`), when its owner allows it.
        self.defers_writes = False
        # The actors whose activities the batch holds, when its owner knows them: what is
        # asked about each of them can be read for all of them at once.
        self.actors: frozenset[str] = frozenset()
        # ... and the ids of those activities.
        self.activities: frozenset[str] = frozenset()
        self._deferred: dict[Hashable, tuple[Deferred, dict[Any, Any]]] = {}
        # Table → ids taken ahead and not yet used, and how many were taken in all
        # (fedi.store.reserved_ids).
        self.reserved_ids: dict[str, tuple[list[int], int]] = {}

    def get(self, key: Hashable) -> tuple[Any] | None:
        return (self._entries[key],) if key in self._entries else None

    def put(self, key: Hashable, value: Any, tables: frozenset[str]) -> None:
        self._entries[key] = value
        for table in tables:
            self._by_table.setdefault(table, set()).add(key)

    def saw(self, statement: str) -> None:
        """A statement went out on the batch's connection: a write drops what it may change."""
        if statement.startswith(_UNCHANGING):  # the common case, at once
            return
        # Anything else may have changed the database; unknown forms count, to be safe.
        self.statements_written += 1
        found = _WRITE.match(statement)
        if found is None:
            return
        for key in self._by_table.pop(found.group(1).lower(), ()):
            self._entries.pop(key, None)

    def mark(self) -> tuple[int, int]:
        """Statements written and failed so far: equal marks before and after an item mean
        it changed nothing in the transaction."""
        return self.statements_written, self.statements_failed

    def deferred(self, key: Hashable, write: Deferred) -> dict[Any, Any]:
        """The state of the deferred write `key`, which `write(session, state)` makes when
        the batch finishes. Only while `defers_writes`: the owner then undoes a failed
        item's writes by rolling back the whole transaction, deferred ones with it. Counts
        as a write (`mark`)."""
        assert self.defers_writes
        self.statements_written += 1
        found = self._deferred.get(key)
        if found is None:
            found = self._deferred[key] = (write, {})
        return found[1]

    def pending(self, key: Hashable) -> dict[Any, Any] | None:
        """The state of the deferred write `key`, if one waits."""
        found = self._deferred.get(key)
        return found[1] if found is not None else None

    async def write_now(self, session: AsyncSession, key: Hashable) -> None:
        """Make the deferred write `key` at once (a query is about to read what it writes);
        what is deferred under `key` afterwards waits again."""
        found = self._deferred.pop(key, None)
        if found is not None:
            await found[0](session, found[1])

    async def finish(self, session: AsyncSession) -> None:
        """Make the deferred writes, in the order they were first deferred."""
        deferred, self._deferred = self._deferred, {}
        for write, state in deferred.values():
            await write(session, state)

    def clear(self) -> None:
        self._entries.clear()
        self._by_table.clear()


def memo_of(session: AsyncSession) -> BatchMemo | None:
    found = session.sync_session.info.get(_KEY)
    return found if isinstance(found, BatchMemo) else None


@asynccontextmanager
async def batch_memo(session: AsyncSession) -> AsyncIterator[BatchMemo]:
    """A memo for the session's transaction, for as long as the block runs."""
    memo = BatchMemo()
    connection = (await session.connection()).sync_connection
    assert connection is not None  # an AsyncConnection once begun has its sync side

    def watch(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        memo.saw(statement)

    event.listen(connection, "before_cursor_execute", watch)
    connection.info[_KEY] = memo  # for _count_failure
    session.sync_session.info[_KEY] = memo
    try:
        yield memo
    finally:
        session.sync_session.info.pop(_KEY, None)
        with suppress(Exception):  # the connection may be gone with a lost batch
            connection.info.pop(_KEY, None)
        with suppress(Exception):
            event.remove(connection, "before_cursor_execute", watch)


@event.listens_for(Engine, "handle_error")
def _count_failure(context: ExceptionContext) -> None:
    # handle_error can only be heard engine-wide: the memo is found on its connection.
    connection = context.connection
    memo = connection.info.get(_KEY) if connection is not None else None
    if isinstance(memo, BatchMemo):
        memo.statements_failed += 1


def _pending(session: AsyncSession, tables: frozenset[str]) -> bool:
    sync = session.sync_session
    if not sync.autoflush:
        return False
    return any(getattr(type(obj), "__tablename__", None) in tables
               for obj in chain(sync.new, sync.dirty, sync.deleted))


async def remembered(
    session: AsyncSession, key: Hashable, tables: frozenset[str],
    load: Callable[[], Awaitable[T]],
) -> T:
    """`load()`'s answer, kept for the batch when the session has a memo (see the module)."""
    memo = memo_of(session)
    if memo is None:
        return await load()
    if _pending(session, tables):
        # What the query would do first: a pending change to what it reads (a Follow just
        # added) is written, and so drops the entries it changes.
        await session.flush()
    found = memo.get(key)
    if found is not None:
        value: T = found[0]
        return value
    value = await load()
    memo.put(key, value, tables)
    return value
