"""The inbox queue's depth and age, as the inbox's admission control needs them.

Counting rows on every request would cost more than storing one, so the figures are read
from the database at most once per `interval` and this process adds what it stored since.
Several `fedi serve` processes share one database; each sees the others' rows at its next
refresh, so the overshoot past the limit is bounded by what they accept in one interval.
Within one process the limit is exact: rows being stored count too (`reserve`), so requests
admitted together under a flood cannot all be stored past it. A request that finds the
figures due for a read starts it and does not wait for it, unless they are more than two
intervals old (after a quiet spell).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi.federation.admission import QueueLimits, Refusal, queue_refusal
from fedi.store.models import InboxItem

log = logging.getLogger(__name__)


class InboxBacklog:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        limits: QueueLimits,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.limits = limits
        self._interval = interval
        self._clock = clock
        self._monotonic = monotonic
        self._depth = 0
        self._oldest: float | None = None  # received_at of the oldest item not yet claimed
        self._stored_since = 0
        self._storing = 0  # reserved: verified, being stored now
        self._read_at = float("-inf")
        self._reading = False
        self._refresh: asyncio.Task[None] | None = None  # a read in the background

    async def refusal(self) -> Refusal | None:
        stale = self._monotonic() - self._read_at
        if not self._reading and stale >= self._interval:
            if stale >= 2 * self._interval:
                await self._read()  # from before a quiet spell: too old to decide on
            else:
                # Under steady traffic the request that finds the figures due does not wait
                # for the count (40-100 ms with a long queue, bench.inbox): it decides on the
                # figures of one interval ago, as a request a moment earlier would have.
                self._reading = True
                self._refresh = asyncio.create_task(self._read())
        return self._refusal()

    def _refusal(self) -> Refusal | None:
        age = 0.0 if self._oldest is None else max(0.0, self._clock() - self._oldest)
        return queue_refusal(self.depth, age, self.limits)

    @property
    def depth(self) -> int:
        return self._depth + self._stored_since + self._storing

    def reserve(self) -> Refusal | None:
        """Right before a row is stored: the refusal if the queue, counting the rows being
        stored now, is full; else this row is counted in until `release`."""
        refused = self._refusal()
        if refused is None:
            self._storing += 1
        return refused

    def release(self, *, stored: bool) -> None:
        """The reserved row was stored (counted until the next read sees it) or was not."""
        self._storing -= 1
        if stored:
            self._stored_since += 1

    async def _read(self) -> None:
        self._reading = True
        # Rows stored while we read may be counted twice until the next read: safe side.
        counted = self._stored_since
        try:
            async with self._sessionmaker() as session:
                depth, oldest = await inbox_figures(session)
        except (SQLAlchemyError, OSError) as exc:
            # Keep the last figures; storing will fail on its own if the database is gone.
            log.warning("could not read the inbox queue's depth: %s", type(exc).__name__)
        else:
            self._depth, self._oldest = depth, oldest
            self._stored_since -= counted
        finally:
            self._read_at = self._monotonic()
            self._reading = False


async def inbox_figures(session: AsyncSession) -> tuple[int, float | None]:
    """Activities waiting to be processed, and when the oldest never-claimed one arrived
    (one being retried after a failure is not "behind"). Also exported by /metrics."""
    depth = (await session.execute(
        select(func.count()).select_from(InboxItem).where(InboxItem.state == "new")
    )).scalar_one()
    oldest = (await session.execute(
        select(InboxItem.received_at)
        .where(InboxItem.state == "new", InboxItem.attempts == 0)
        .order_by(InboxItem.id).limit(1)
    )).scalar_one_or_none()
    return int(depth), oldest
