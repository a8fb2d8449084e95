"""Wake the delivery worker when a transaction that adds deliveries commits.

Without this the worker finds new rows at its next idle poll (up to half a second later),
which a fan-out's first delivery and a relayed reply's last one both pay for.

- In the process that committed: the sessionmaker's waker (`attach`) is called after the
  commit succeeded (a rollback wakes nobody).
- PostgreSQL: `pg_notify` on CHANNEL runs just before COMMIT, in the same transaction, so
  every worker process LISTENing (`listen`) hears it at commit: a post made by `fedi post`
  or by another `fedi serve` process wakes `fedi worker` at once.
- SQLite across processes (the CLI beside `fedi serve`): the committing process sends one
  datagram to a Unix socket in Linux's abstract namespace, named after the database file
  (`sqlite_address`), which the worker holds (`listen_sqlite`). Nobody listening, another
  system, or a full socket: the datagram is dropped and the worker's poll finds the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import sys
from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session, UOWTransaction

from fedi.live.listener import asyncpg_dsn
from fedi.store.models import Delivery

log = logging.getLogger(__name__)

CHANNEL = "fedi_deliveries"
_ADDED = "fedi.delivery.added"  # this transaction added delivery rows
_READY = "fedi.delivery.ready"  # ... and is committing
_WAKER = "fedi.delivery.waker"
FIRST_DELAY, MAX_DELAY = 0.5, 30.0  # reconnecting the LISTEN connection


def attach(sessionmaker: async_sessionmaker[Any], waker: Callable[[], None]) -> None:
    """Sessions of this sessionmaker call `waker` after committing new deliveries."""
    info = dict(sessionmaker.kw.get("info") or {})  # other hooks keep their entries
    info[_WAKER] = waker
    sessionmaker.configure(info=info)


def added(session: Session) -> None:
    """This transaction added delivery rows (enqueue's statement, which no ORM hook sees):
    wake the worker when it commits."""
    session.info[_ADDED] = True


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    if any(isinstance(row, Delivery) for row in session.new):
        session.info[_ADDED] = True


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    # Savepoints send these events too (fedi.live.source says why only the outermost counts).
    if session.in_nested_transaction():
        return
    if session.new:
        session.flush()  # rows added since the last flush count too
    if not session.info.pop(_ADDED, False):
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    session.info[_READY] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    if session.info.pop(_READY, False):
        waker = session.info.get(_WAKER)
        if callable(waker):
            waker()
        bind = session.get_bind()
        if bind.dialect.name == "sqlite":
            _tell_other_processes(str(bind.engine.url))


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if session.in_nested_transaction():
        return  # waking the worker for rows a savepoint took back costs one empty claim
    session.info.pop(_ADDED, None)
    session.info.pop(_READY, None)


APPLICATION_NAME = "fedi delivery wake-ups"  # as pg_stat_activity shows it


async def listen(database_url: str, waker: Callable[[], None], stop: asyncio.Event) -> None:
    """PostgreSQL: call `waker` on every notification of CHANNEL until stop is set; the
    connection is made again (with backoff) when lost. Never raises."""
    import asyncpg  # PostgreSQL only: on SQLite the driver would be 3 MB for nothing

    dsn = asyncpg_dsn(database_url)
    delay = FIRST_DELAY
    while not stop.is_set():
        try:
            conn = await asyncpg.connect(
                dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME})
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await conn.add_listener(CHANNEL, lambda *_args: waker())
                waker()  # what was committed while not listening
                delay = FIRST_DELAY
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=5)
        except Exception as exc:  # a database restart: try again, the poll covers the gap
            log.warning("delivery wake-ups: no LISTEN connection (%s); trying again in %.1f s",
                        type(exc).__name__, delay)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, MAX_DELAY)


# -- SQLite: a datagram between processes on one machine -------------------------------------
_listening: set[bytes] = set()  # the addresses this process holds: it wakes itself directly
_sender: socket.socket | None = None


@cache
def sqlite_address(database_url: str) -> bytes | None:
    """The abstract Unix socket name for a SQLite database file's wake-ups; None where there
    is no such namespace (not Linux) or no file (an in-memory database)."""
    if not sys.platform.startswith("linux"):
        return None
    path = make_url(database_url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:32]
    return b"\0fedi-deliveries-" + digest.encode()


def _tell_other_processes(database_url: str) -> None:
    global _sender
    address = sqlite_address(database_url)
    if address is None or address in _listening:
        return
    try:
        if _sender is None:
            _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender.setblocking(False)
        _sender.sendto(b"!", address)
    except OSError:
        pass  # nobody listens, or a wake-up is already waiting: the poll covers either


async def listen_sqlite(database_url: str, waker: Callable[[], None], stop: asyncio.Event
                        ) -> None:
    """SQLite: call `waker` on every datagram sent to this database's address, until stop
    is set. Another worker holding the address already, or no such namespace: return, and
    the poll remains. Never raises."""
    address = sqlite_address(database_url)
    if address is None:
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
    except OSError as exc:
        log.info("delivery wake-ups from other processes: not listening (%s); the poll "
                 "finds their deliveries", exc.strerror or type(exc).__name__)
        sock.close()
        return
    sock.setblocking(False)

    def drain() -> None:
        with contextlib.suppress(OSError):
            while sock.recv(64):
                pass
        waker()

    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), drain)
    _listening.add(address)
    try:
        await stop.wait()
    finally:
        _listening.discard(address)
        loop.remove_reader(sock.fileno())
        sock.close()
