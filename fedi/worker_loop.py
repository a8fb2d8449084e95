"""The polling loop shared by the inbox processor and the delivery worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def poll_loop(
    run_once: Callable[[], Awaitable[int]],
    stop: asyncio.Event,
    wake: asyncio.Event | None = None,
    idle_seconds: float = 0.5,
) -> None:
    """Call run_once until stop is set; when it finds nothing, sleep until woken or idle ends."""
    waiter = wake or asyncio.Event()
    while not stop.is_set():
        try:
            done = await run_once()
        except Exception:
            log.exception("worker step failed; retrying shortly")
            done = 0
        if done:
            continue
        try:
            await asyncio.wait_for(waiter.wait(), timeout=idle_seconds)
        except TimeoutError:
            pass
        waiter.clear()
