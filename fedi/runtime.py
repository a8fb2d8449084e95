"""Process-level tuning for long-running fedi processes (server and worker).

bench/fanout measured a quarter of a delivery's CPU in the garbage collector's full
collections over long-lived objects, and about a tenth more on the stock event loop than on
uvloop (which uvicorn[standard] already installs).
"""

from __future__ import annotations

import asyncio
import gc
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


def settle_gc() -> None:
    """After start-up: keep what exists out of future collections, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
