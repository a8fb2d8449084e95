"""LISTEN on PostgreSQL for one serve process, on a connection of its own.

The connection is not taken from the pool (it is held for the process's life). When it
drops (a database restart, a failover, a killed backend) the listener reconnects with
backoff; pages go on being served meanwhile, and streams get nothing until it is back
(a browser that reconnects then catches up by Last-Event-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from fedi.live.events import CHANNEL, LiveEvent, decode
from fedi.logs import redact

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
PING_SECONDS = 15.0  # a half-open connection is found out within this
APPLICATION_NAME = "fedi live updates"  # how an admin tells it apart in pg_stat_activity


def asyncpg_dsn(database_url: str) -> str:
    """The libpq-style address asyncpg takes, from fedi's SQLAlchemy URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(
        hide_password=False)


class PgListener:
    def __init__(self, database_url: str, publish: Callable[[LiveEvent], None]) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._publish = publish
        self.connected = asyncio.Event()  # set while LISTENing (tests wait on it)
        self._delay = FIRST_DELAY

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        found = decode(payload)
        if found is not None:
            self._publish(found)

    async def run(self, stop: asyncio.Event) -> None:
        """Until stop is set. Never raises: whatever breaks the connection, it is retried."""
        self._delay = FIRST_DELAY
        while not stop.is_set():
            try:
                await self._listen(stop)
            except Exception as exc:
                line = redact(str(exc).splitlines()[0] if str(exc) else "")
                log.warning("live updates: no connection to the database (%s: %s); "
                            "trying again in %.1f s", type(exc).__name__, line, self._delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._delay)
            self._delay = min(self._delay * 2, MAX_DELAY)

    async def _listen(self, stop: asyncio.Event) -> None:
        import asyncpg  # PostgreSQL only: on SQLite the driver would be 3 MB for nothing

        conn = await asyncpg.connect(self._dsn, timeout=10,
                                     server_settings={"application_name": APPLICATION_NAME})
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            self.connected.set()
            self._delay = FIRST_DELAY
            log.info("live updates: listening")
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(stop, lost), PING_SECONDS)
                if lost.is_set():
                    raise ConnectionResetError("the LISTEN connection was closed")
                if not stop.is_set():
                    await conn.fetchval("SELECT 1", timeout=10)
        finally:
            self.connected.clear()
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
