"""The polling loop of the inbox processor (the delivery worker drives itself: see
fedi.delivery.worker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError

from fedi.delivery.worker import brief

log = logging.getLogger(__name__)


async def poll_loop(
    run_once: Callable[[], Awaitable[int]],
    stop: asyncio.Event,
    wake: asyncio.Event | None = None,
    idle_seconds: float = 0.5,
) -> None:
    """Call run_once until stop is set; when it finds nothing, sleep until woken or idle ends."""
    waiter = wake or asyncio.Event()
    pause = 0.0
    while not stop.is_set():
        try:
            done = await run_once()
            pause = 0.0
        except (SQLAlchemyError, OSError, ConnectionError, TimeoutError) as exc:
            # The database restarting or unreachable: one line, no traceback (it may quote
            # SQL parameters), and wait a little longer each time.
            pause = min(5.0, max(0.25, pause * 2))
            log.warning("worker: database unavailable (%s); retrying in %.1fs", brief(exc), pause)
            await asyncio.sleep(pause)
            continue
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
