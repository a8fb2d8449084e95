"""How many deliveries one remote host gets at once: a limit that adapts to its answers.

Pure policy: no I/O, the clock is passed in. The worker asks `free(host)` before it claims
and reports every answer with `answered(...)`.

- Start at `start` (8). Each fast 2xx adds one slot (slow start: the limit doubles per round
  trip) until the first cut; after a cut it grows by one slot per round trip (additive).
- 429, 5xx, no answer, and slow answers cut the limit by half (multiplicative), at most once
  per round trip: the answers to requests sent before the cut say nothing about the new
  limit, so a burst of 503s halves it once, not down to the floor at once.
- "Slow" is relative to the host's own best round trip (a far host is not slow for being far):
  more than SLOW_FACTOR times it, and more than SLOW_FLOOR seconds.
- Retry-After on 429/503 pauses the host until then (capped at MAX_PAUSE).
- Bounded: between `floor` (1) and `ceiling`; at most `max_hosts` remembered (least recently
  used forgotten first), and a host idle for IDLE_SECONDS starts again from `start`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

SLOW_FACTOR = 4.0
SLOW_FLOOR = 2.0  # seconds: below this no answer counts as slow
IDLE_SECONDS = 600.0
MAX_PAUSE = 3600.0
MAX_HOSTS = 10_000


@dataclass
class _Host:
    limit: float
    seen_at: float
    best_rtt: float | None = None
    cut_at: float = float("-inf")  # when the limit was last cut
    grown: bool = False  # cut at least once: additive growth from now on
    paused_until: float = 0.0


def _idle(state: _Host, now: float) -> bool:
    return now - state.seen_at > IDLE_SECONDS and state.paused_until <= now


@dataclass
class HostLimits:
    start: int = 8
    ceiling: int = 64
    floor: int = 1
    max_hosts: int = MAX_HOSTS
    _hosts: OrderedDict[str, _Host] = field(default_factory=OrderedDict)
    # Hosts that asked us to wait, until when: the worker asks before every claim, and going
    # through every remembered host (thousands after a big fan-out) each time cost more.
    _paused: dict[str, float] = field(default_factory=dict)
    peak: int = 0  # the highest limit any host reached (benchmarks print it)

    def __post_init__(self) -> None:
        self.ceiling = max(1, self.ceiling)
        self.floor = max(1, min(self.floor, self.ceiling))
        self.start = max(self.floor, min(self.start, self.ceiling))

    def _state(self, host: str, now: float) -> _Host:
        state = self._hosts.get(host)
        if state is None or _idle(state, now):
            state = _Host(limit=float(self.start), seen_at=now)
            self._hosts[host] = state
        self._hosts.move_to_end(host)
        while len(self._hosts) > self.max_hosts:
            forgotten, _ = self._hosts.popitem(last=False)
            self._paused.pop(forgotten, None)
        return state

    def limit(self, host: str, now: float) -> int:
        """Deliveries `host` may have in flight now (0 while it asked us to pause)."""
        state = self._hosts.get(host)
        if state is None or _idle(state, now):
            return self.start
        if state.paused_until > now:
            return 0
        return int(state.limit)

    def paused(self, now: float) -> list[str]:
        """Hosts that asked us to wait (Retry-After) and whose wait is not over."""
        for host in [h for h, until in self._paused.items() if until <= now]:
            del self._paused[host]
        return list(self._paused)

    def remembered(self) -> int:
        return len(self._hosts)

    def answered(
        self, host: str, *, sent_at: float, now: float, status: int | None,
        retry_after: float | None = None,
    ) -> None:
        """One answer from `host` to a request sent at `sent_at` (status None: no answer)."""
        state = self._state(host, now)
        state.seen_at = now
        rtt = max(0.0, now - sent_at)
        ok = status is not None and status < 500 and status != 429
        if ok and (state.best_rtt is None or rtt < state.best_rtt):
            state.best_rtt = rtt
        slow = rtt > SLOW_FLOOR and state.best_rtt is not None and \
            rtt > SLOW_FACTOR * state.best_rtt
        if status in (429, 503) and retry_after is not None and retry_after > 0:
            state.paused_until = max(state.paused_until, now + min(retry_after, MAX_PAUSE))
            self._paused[host] = state.paused_until
        if not ok or slow:
            if sent_at >= state.cut_at:  # sent after the last cut: news about the new limit
                state.limit = max(float(self.floor), state.limit / 2)
                state.cut_at = now
                state.grown = True
            return
        if status is not None and status < 300:
            step = 1.0 / state.limit if state.grown else 1.0
            state.limit = min(float(self.ceiling), state.limit + step)
            self.peak = max(self.peak, int(state.limit))
