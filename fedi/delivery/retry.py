"""What to do after a delivery attempt (pure: no I/O, no clock of its own).

- 2xx: done.
- 4xx: final (the peer will never accept it), except 401, 408 and 429, which are retried;
  Retry-After is honoured when it asks for a longer pause than ours.
- 410 from a shared inbox: the whole host is gone.
- 5xx, timeouts (a hanging inbox), refused connections: retried with exponential backoff and
  jitter, for GIVE_UP_AFTER (days), then failed.
- A host that cannot be reached at all (connection refused, no route, connect timeout) is
  paused at once, not after BREAKER_THRESHOLD failures: each of its other rows would only burn
  a signature on a connection that fails the same way, and hold slots healthy hosts need.
- Decided by the worker before this: a destination the SSRF guard refuses fails at once (it
  would be refused every time), and rows for a host marked gone are closed unsent.

Every instant is stored in the row (`next_attempt_at`) or the host (`down_until`), so a
restarted worker keeps the backoff.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BASE_DELAY = 30.0
MAX_DELAY = 12 * 3600.0
GIVE_UP_AFTER = 7 * 24 * 3600.0
RETRYABLE_4XX = frozenset({401, 408, 429})
# Consecutive failures after which a host is skipped for a while (circuit breaker).
BREAKER_THRESHOLD = 5
BREAKER_MAX_PAUSE = 6 * 3600.0
# First pause of a host no connection could be opened to; doubles with each failure after.
UNREACHABLE_PAUSE = 60.0


@dataclass(frozen=True)
class Outcome:
    state: str  # done | pending | failed | dropped (refused by domain policy)
    next_attempt_at: float
    host_ok: bool  # the host answered like a working server
    host_gone: bool = False
    host_unreachable: bool = False  # no connection could be opened: pause the host at once


def backoff(attempts: int, rng: random.Random) -> float:
    """Full-jitter exponential backoff: up to BASE·2^(n-1), at least a quarter of it."""
    ceiling = min(MAX_DELAY, BASE_DELAY * 2.0 ** max(0, attempts - 1))
    return ceiling * (0.25 + 0.75 * rng.random())


def decide(
    *,
    status: int | None,
    attempts: int,
    created_at: float,
    now: float,
    retry_after: float | None = None,
    shared_inbox: bool = False,
    unreachable: bool = False,
    rng: random.Random | None = None,
) -> Outcome:
    """`status` None means no HTTP answer (timeout, connection refused, refused address);
    `unreachable`: not even a connection opened."""
    rng = rng or random.Random()
    if status is not None and 200 <= status < 300:
        return Outcome("done", now, host_ok=True)
    if status == 410 and shared_inbox:
        return Outcome("failed", now, host_ok=False, host_gone=True)
    if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Outcome("failed", now, host_ok=True)
    delay = backoff(attempts, rng)
    if retry_after is not None and status in (429, 503):
        delay = max(delay, min(retry_after, MAX_DELAY))
    if now + delay - created_at > GIVE_UP_AFTER:
        return Outcome("failed", now, host_ok=status is not None and status < 500)
    host_ok = status is not None and status < 500
    return Outcome("pending", now + delay, host_ok=host_ok,
                   host_unreachable=unreachable and status is None)


def breaker_pause(failures: int, *, unreachable: bool = False) -> float:
    """How long to skip a host after `failures` consecutive failures: 0 below the threshold,
    unless the host could not be reached at all, which pauses it from the first failure."""
    if unreachable:
        return min(BREAKER_MAX_PAUSE, UNREACHABLE_PAUSE * 2.0 ** max(0, failures - 1))
    if failures < BREAKER_THRESHOLD:
        return 0.0
    return min(BREAKER_MAX_PAUSE, 60.0 * 2.0 ** (failures - BREAKER_THRESHOLD))
