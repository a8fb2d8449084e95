"""The inbox's durable store: group commit of concurrent requests' rows.

Rows of requests that arrive while a transaction is committing wait for the next one and go
in together: one multi-row INSERT, one commit, instead of a session and a commit per request
(bench/inbox measured that as the inbox's main cost on PostgreSQL). Each caller returns only
once its own row is committed, so a 202 is never answered for something that could be lost.

Bounded on every side:
- a transaction carries at most `max_batch` rows;
- at most `max_pending` rows wait for one; past that a caller is refused at once;
- a row not yet in a transaction after `max_wait` seconds is withdrawn and refused (a row whose
  transaction is under way waits for its outcome: refusing it could deny a stored row);
- a failed transaction is rolled back whole, and every caller in it is refused.
A refusal is `StoreBusy`; the inbox answers it 503 with Retry-After, and nothing of it is
stored, so a sender that retries loses nothing.

On PostgreSQL a batch is one round trip on a connection the store keeps: asyncpg's
executemany sends every row's Bind and Execute before one Sync, and the server runs them as
one implicit transaction (all rows or none, asyncpg >= 0.22). Through SQLAlchemy the same
batch was a pool checkout, BEGIN, the INSERT and COMMIT: about 550 µs of CPU per batch
against about 90 µs (each timed alone, one row a batch). At half the inbox's capacity a batch
holds one or two rows: bench.inbox's server CPU per request there fell by a fifth.
SQLite keeps an explicit transaction through SQLAlchemy: outside one, its executemany
commits each row by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

MAX_BATCH = 256
MAX_PENDING = 4096
MAX_WAIT = 5.0  # seconds a row may wait for its transaction to start
CLOSE_WAIT = 10.0  # seconds a shutdown waits for the rows already accepted into the queue


class StoreBusy(Exception):
    """The row was not stored (and never will be by this call); the sender should retry."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class _Row:
    values: dict[str, Any]
    done: asyncio.Future[None]
    taken: bool = field(default=False)  # in a transaction: its outcome decides


class GroupCommit:
    def __init__(
        self, engine: AsyncEngine, statement: Any, *, max_batch: int = MAX_BATCH,
        max_pending: int = MAX_PENDING, max_wait: float = MAX_WAIT,
    ) -> None:
        # statement: an INSERT taking one dict of values per row
        self._writer: _InTransaction | _Pipelined = (
            _Pipelined(engine, statement) if engine.dialect.name == "postgresql"
            else _InTransaction(engine, statement)
        )
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_wait = max_wait
        self._pending: list[_Row] = []
        self._in_flight: list[_Row] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._pending)

    async def insert(self, values: dict[str, Any]) -> None:
        """Returns once the row is committed; raises StoreBusy if it was not stored."""
        if len(self._pending) >= self._max_pending:
            raise StoreBusy(f"the inbox store is behind ({len(self._pending)} rows waiting)")
        loop = asyncio.get_running_loop()
        row = _Row(values, loop.create_future())
        row.done.add_done_callback(_retrieve)
        self._pending.append(row)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        # A timer, not wait_for: this runs for every request, and a timer is the cheaper.
        timer = loop.call_later(self._max_wait, self._expire, row)
        try:
            await row.done
        finally:
            timer.cancel()

    def _expire(self, row: _Row) -> None:
        """Withdraw a row still waiting for its transaction; one under way waits for it."""
        if row.taken or row.done.done():
            return
        with contextlib.suppress(ValueError):
            self._pending.remove(row)
        row.done.set_exception(
            StoreBusy(f"the inbox store did not start a transaction in {self._max_wait:g} s")
        )

    async def _run(self) -> None:
        while self._pending:
            # Let the requests that are already running add their rows to this commit.
            await asyncio.sleep(0)
            batch, self._pending = (
                self._pending[: self._max_batch], self._pending[self._max_batch :]
            )
            for row in batch:
                row.taken = True
            await self._commit(batch)

    async def _commit(self, batch: list[_Row]) -> None:
        self._in_flight = batch
        try:
            await self._writer.write([row.values for row in batch])
        except Exception as exc:  # rolled back whole: nobody in it may be told 202
            if isinstance(exc, (SQLAlchemyError, OSError, *self._writer.driver_errors)):
                log.warning("inbox store: a transaction of %d rows failed: %s",
                            len(batch), type(exc).__name__)
            else:
                log.exception("inbox store: a transaction of %d rows failed", len(batch))
            _fail(batch, "the inbox could not store the activity; retry later")
        else:
            for row in batch:
                if not row.done.done():
                    row.done.set_result(None)
        finally:
            self._in_flight = []

    async def close(self) -> None:
        """Let the rows already waiting be committed (for up to CLOSE_WAIT s), then refuse
        whatever is left."""
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_WAIT)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        _fail([*self._in_flight, *self._pending], "the server is shutting down")
        self._pending, self._in_flight = [], []
        await self._writer.close()


class _InTransaction:
    """A batch in an explicit transaction through SQLAlchemy (SQLite)."""

    driver_errors: tuple[type[Exception], ...] = ()

    def __init__(self, engine: AsyncEngine, statement: Any) -> None:
        self._engine = engine
        self._statement = statement

    async def write(self, rows: list[dict[str, Any]]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(self._statement, rows)

    async def close(self) -> None:
        return None


class _Pipelined:
    """A batch as one asyncpg executemany on a pooled connection held for the store's life
    (PostgreSQL; see the module's docstring). The values must be what asyncpg takes as they
    are (str, int, float, None): SQLAlchemy's type processing is not applied. The statement
    must skip rows already stored (ON CONFLICT DO NOTHING), as the inbox's does: a batch
    whose connection was lost is sent again."""

    def __init__(self, engine: AsyncEngine, statement: Any) -> None:
        import asyncpg  # PostgreSQL only: an install for SQLite alone need not load it

        self.driver_errors = (asyncpg.PostgresError, asyncpg.InterfaceError)
        self._engine = engine
        self._statement = statement
        self._sql = ""
        self._keys: tuple[str, ...] = ()
        self._held: AsyncConnection | None = None
        self._driver: Any = None

    async def write(self, rows: list[dict[str, Any]]) -> None:
        if not self._sql:  # the statement as SQLAlchemy would send it, compiled once
            compiled = self._statement.compile(
                dialect=self._engine.dialect, column_keys=list(rows[0]), for_executemany=True
            )
            self._sql, self._keys = compiled.string, tuple(compiled.positiontup or ())
        args = [tuple(values[key] for key in self._keys) for values in rows]
        for attempt in (1, 2):
            driver = await self._connection()
            try:
                await driver.executemany(self._sql, args)
                return
            except Exception:
                if not driver.is_closed():
                    raise  # refused by the server: the batch's implicit transaction ended
                await self._drop()
                # A connection lost (say, the server restarted, or a proxy closed it while
                # idle) committed the batch whole or not at all, and the statement skips rows
                # already stored: the batch is sent once more, on a new connection.
                if attempt == 2:
                    raise
            except BaseException:  # cancelled mid-pipeline: the connection's state is unknown
                await self._drop()
                raise

    async def _connection(self) -> Any:
        if self._held is None:
            held = await self._engine.connect()
            self._driver = (await held.get_raw_connection()).driver_connection
            self._held = held
        return self._driver

    async def _drop(self) -> None:
        """The pool closes the connection instead of handing it out again."""
        held, self._held, self._driver = self._held, None, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held.invalidate()
            with contextlib.suppress(Exception):
                await held.close()

    async def close(self) -> None:
        held, self._held, self._driver = self._held, None, None
        if held is not None:
            await held.close()


def _fail(rows: list[_Row], reason: str) -> None:
    failure = StoreBusy(reason)
    for row in rows:
        if not row.done.done():
            row.done.set_exception(failure)


def _retrieve(done: asyncio.Future[None]) -> None:
    # A caller that went away (client disconnected) no longer awaits its row's outcome.
    if not done.cancelled():
        done.exception()
