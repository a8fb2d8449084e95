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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

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
        self._engine = engine
        self._statement = statement  # an INSERT taking one dict of values per row
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
            async with self._engine.begin() as conn:
                await conn.execute(self._statement, [row.values for row in batch])
        except Exception as exc:  # rolled back whole: nobody in it may be told 202
            if isinstance(exc, (SQLAlchemyError, OSError)):
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


def _fail(rows: list[_Row], reason: str) -> None:
    failure = StoreBusy(reason)
    for row in rows:
        if not row.done.done():
            row.done.set_exception(failure)


def _retrieve(done: asyncio.Future[None]) -> None:
    # A caller that went away (client disconnected) no longer awaits its row's outcome.
    if not done.cancelled():
        done.exception()
