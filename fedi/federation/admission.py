"""Inbox admission control, pure logic: is the queue too deep or too old, and is one remote
host sending faster than its share? No I/O here; fedi.federation.backlog reads the queue.

A flood must never make the inbox queue grow without bound, and one busy or hostile server
must not use up the room the others need (issue 12, item 7).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# How long a refused sender is told to wait when the queue is full; about the time the worker
# needs to make room for a batch.
QUEUE_RETRY_AFTER = 30


@dataclass(frozen=True)
class Refusal:
    status: int  # 429 (this host is too fast) or 503 (we are too busy)
    reason: str
    retry_after: int  # seconds, for the Retry-After header


@dataclass(frozen=True)
class QueueLimits:
    max_depth: int  # inbox items waiting to be processed
    max_age: float  # seconds the oldest unprocessed item may have waited


def queue_refusal(depth: int, oldest_age: float, limits: QueueLimits) -> Refusal | None:
    """503 when the backlog is past either limit: what we accept now could not be processed
    in reasonable time, and a sender that retries later loses nothing."""
    if depth >= limits.max_depth:
        return Refusal(503, f"inbox queue is full ({depth} activities waiting); retry later",
                       QUEUE_RETRY_AFTER)
    if oldest_age > limits.max_age:
        return Refusal(503, f"inbox queue is behind by {int(oldest_age)} s; retry later",
                       QUEUE_RETRY_AFTER)
    return None


class HostBuckets:
    """A token bucket per remote host: `rate` activities per second, bursts up to `burst`.

    O(1) per request and bounded in memory: buckets live in least-recently-used order, a
    bucket idle long enough to be full again is the same as no bucket and is dropped, and
    past `max_hosts` the least recently used one goes.
    """

    def __init__(
        self, rate: float, burst: float, max_hosts: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = burst
        self._max_hosts = max_hosts
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, host: str, moment: float) -> float:
        found = self._buckets.get(host)
        if found is None:
            return self._burst
        tokens, at = found
        return min(self._burst, tokens + (moment - at) * self._rate)

    def wait(self, host: str) -> float:
        """Seconds until `host` may send again; 0 if it may send now. Takes nothing."""
        tokens = self._tokens(host, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self._rate

    def take(self, host: str) -> None:
        """Charge one activity to `host`. The balance may go below zero when requests that
        were admitted together finish together; the host then waits that much longer."""
        moment = self._clock()
        self._buckets[host] = (self._tokens(host, moment) - 1, moment)
        self._buckets.move_to_end(host)
        self._evict(moment)

    def _evict(self, moment: float) -> None:
        while self._buckets:
            host, (tokens, at) = next(iter(self._buckets.items()))
            full = moment - at >= (self._burst - tokens) / self._rate
            if full or len(self._buckets) > self._max_hosts:
                del self._buckets[host]
            else:
                break

    def refusal(self, host: str) -> Refusal | None:
        wait = self.wait(host)
        if wait <= 0:
            return None
        return Refusal(429, f"too many activities from {host}; retry later",
                       max(1, math.ceil(wait)))
