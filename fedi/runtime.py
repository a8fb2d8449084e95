"""Process-level tuning for long-running fedi processes (server and worker).

bench/fanout measured a quarter of a delivery's CPU in the garbage collector's full
collections over long-lived objects, and about a tenth more on the stock event loop than on
uvloop (which uvicorn[standard] already installs).
"""

from __future__ import annotations

import asyncio
import gc
import resource
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    result: T = uvloop.run(coroutine)
    return result


OPEN_FILES = 16_384  # sockets: deliveries in flight (one per host), clients, the database


def settle_gc() -> None:
    """After start-up: keep what exists out of future collections, and collect less often;
    and room for a fan-out's sockets (raise_open_files)."""
    gc.collect()
    gc.freeze()
    # A request leaves a few hundred objects in reference cycles (Jinja's contexts, SQL
    # statements), and a young collection's pause grows with what it frees: at 50,000 it
    # took 40-80 ms every few dozen pages, the p99 of every page (bench.pages). At 10,000 a
    # pause is a fifth of that; the older generations keep their cadence in allocations
    # (every 1,000,000 and 100,000,000), and inbox throughput (bench.inbox) did not change.
    gc.set_threshold(10_000, 100, 100)
    raise_open_files()


def raise_open_files(wanted: int = OPEN_FILES) -> int:
    """Raise the soft limit of open files towards `wanted`, within the hard limit; return it.

    A fan-out keeps one connection per host in flight: the common soft limit of 1,024 (the
    hard one is usually far higher) would fail deliveries with EMFILE, not slow them down.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
