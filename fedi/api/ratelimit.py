"""Rate limits of the client API, per token and per address, as Mastodon counts them:
fixed five-minute windows, with `X-RateLimit-Limit`, `-Remaining` and `-Reset` (ISO 8601)
on every answer and 429 past the limit. Counts are per process (each `fedi serve` worker
counts its own share), which bounds abuse without a shared store."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

WINDOW = 300.0
PER_TOKEN = 300
PER_ADDRESS = 7500
MAX_KEYS = 100_000


@dataclass
class Window:
    start: float
    count: int = 0


@dataclass
class Limiter:
    limit: int
    window: float = WINDOW
    counts: dict[str, Window] = field(default_factory=dict)

    def hit(self, key: str, now: float | None = None) -> tuple[bool, int, float]:
        """(allowed, remaining, reset time) after counting one request."""
        now = time.time() if now is None else now
        start = now - now % self.window
        found = self.counts.get(key)
        if found is None or found.start != start:
            if len(self.counts) >= MAX_KEYS:
                self.counts = {k: w for k, w in self.counts.items() if w.start == start}
            found = self.counts[key] = Window(start)
        found.count += 1
        return found.count <= self.limit, max(0, self.limit - found.count), start + self.window


def headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": datetime.fromtimestamp(reset, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"),
    }
