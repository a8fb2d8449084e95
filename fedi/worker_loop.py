"""The polling loop of the inbox processor (the delivery worker drives itself: see
fedi.delivery.worker)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi.delivery.worker import brief
from fedi.groups.moderation import lift_expired_bans
from fedi.store import heartbeats
from fedi.urls import Urls

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


HEARTBEAT_SECONDS = 10.0
CHORES_SECONDS = 30.0
_DB_ERRORS = (SQLAlchemyError, OSError, ConnectionError, TimeoutError)


async def heartbeat_loop(
    sessionmaker: async_sessionmaker[AsyncSession], stop: asyncio.Event,
    interval: float = HEARTBEAT_SECONDS,
) -> None:
    """Say every `interval` seconds that this process's worker runs (/readyz asks); on a
    clean stop, say it no longer does. A database outage is the other loops' to report."""
    worker = f"{socket.gethostname()}:{os.getpid()}"[:255]
    started = time.time()
    while not stop.is_set():
        try:
            async with sessionmaker() as session, session.begin():
                await heartbeats.beat(session, worker, started, time.time())
        except _DB_ERRORS:
            pass
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
    try:
        async with sessionmaker() as session, session.begin():
            await heartbeats.forget(session, worker)
    except _DB_ERRORS:
        pass


async def chores_loop(
    sessionmaker: async_sessionmaker[AsyncSession], urls: Urls, stop: asyncio.Event,
    interval: float = CHORES_SECONDS,
) -> None:
    """Work that falls due with time rather than with a message: bans whose end passed.
    Every worker process runs it; the rows it changes are claimed by deleting them, so two
    processes lifting the same ban at once roll one of them back, and it is done once."""
    while not stop.is_set():
        try:
            async with sessionmaker() as session, session.begin():
                await lift_expired_bans(session, urls, time.time())
        except _DB_ERRORS as exc:
            log.warning("chores: %s", type(exc).__name__)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass

