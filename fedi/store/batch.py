"""Group commit: rows from many concurrent requests go into one INSERT and one commit.

Each caller still waits until its own row is committed, so an answer (the inbox's 202) is
never given for something that could be lost; under load one transaction carries dozens of
rows instead of one. bench/inbox measured the per-request ORM session as the inbox's main
cost on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

MAX_BATCH = 256


class BatchInserter:
    def __init__(self, engine: AsyncEngine, statement: Any, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._statement = statement  # an INSERT taking one dict of values per row
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def insert(self, values: dict[str, Any]) -> None:
        """Returns once the row is committed; raises if its batch failed."""
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(self._queue))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((values, done))
        await done

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        while True:
            batch = [await queue.get()]
            # Let the requests that are already running add their rows to this commit.
            await asyncio.sleep(0)
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(self._statement, [values for values, _ in batch])
            except Exception as exc:  # every waiter learns its row was not stored
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
