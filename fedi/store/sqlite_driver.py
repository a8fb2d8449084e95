"""SQLite through aiosqlite, one hand-over to its thread per statement instead of four.

aiosqlite runs each call on the connection's own thread. SQLAlchemy's adapter makes four such
calls per statement: make a cursor, execute, fetch the rows, close. Each wakes that thread and
hands the GIL back and forth; in `bench.processing` (a worker pinned to one core) those
hand-overs were about 40% of a processed Like, and the SQL itself under 3%. Here one call on
the thread does all four and brings back what SQLAlchemy asks of the cursor afterwards
(description, rowcount, lastrowid, the rows).

Everything else (transactions, errors, server-side cursors, the pool) is SQLAlchemy's
aiosqlite dialect unchanged: `make_engine` hands it this DBAPI module, and the URL an admin
writes stays `sqlite+aiosqlite:///…`.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

_Ran = tuple[Any, int, int | None, list[Any] | None]


def _run(raw: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Ran:
    """On the connection's thread: the whole life of one cursor."""
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else None
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneCallCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor that exists only for the length of one call on the connection's thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        # No aiosqlite cursor is made here (that was a call on the thread of its own).
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]  # close() has nothing to close
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    async def _call(self, operation: str, parameters: Any, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            ran: _Ran = await connection._execute(  # type: ignore[no-untyped-call]
                _run, connection._conn, operation, parameters, many)
        self._description, self._rowcount, self._lastrowid, rows = ran
        self._rows = collections.deque(rows or ())

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._call(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        await self._call(operation, seq_of_parameters, many=True)

    async def _async_soft_close(self) -> None:
        return None  # the cursor closed on the thread, its rows are here


class OneCallConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneCallCursor


class OneCallDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneCallConnection:
        adapted = super().connect(*arg, **kw)
        return OneCallConnection(self, adapted._connection)


def dbapi() -> OneCallDBAPI:
    """The DBAPI module for `create_async_engine(..., module=...)` on SQLite."""
    return OneCallDBAPI(aiosqlite, sqlite3)
