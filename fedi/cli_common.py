"""What every `fedi` command shares: services built, checked (and, for `fedi serve` and
`fedi init` only, migrated) and started, then closed; the one line a failure prints; the
socket `fedi serve` listens on.

Only `fedi serve`, `fedi init` and `fedi migrate` create or migrate a database. Every other
command, `fedi worker` included, finds the database where the configuration says, at this
code's schema, or stops with one line saying what to run; it never creates a SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from fedi import runtime
from fedi.config import Settings
from fedi.errors import ConfigError, FediError
from fedi.logs import redact
from fedi.services import Services, build_services
from fedi.store.db import missing_sqlite_file
from fedi.store.identity import check_connection, check_identity, summary
from fedi.store.migrate import migrate
from fedi.store.schema import schema_state


def with_services(
    settings: Settings, work: Callable[[Services], Awaitable[int]], *,
    long_running: bool = False, migrating: bool = False,
) -> int:
    """Run `work` with ready services: the database checked (created and migrated if
    `migrating`, else found at this code's schema), the instance keys made."""
    if not migrating:
        require_database(settings)
    else:
        create_private_sqlite_file(settings)

    async def runner() -> int:
        services = build_services(settings)
        try:
            await check_connection(services.engine)
            if migrating:
                await migrate(services.engine)
            else:
                state = await schema_state(services.engine)
                if not state.at_head:
                    raise ConfigError(state.advice())
            await check_identity(services.engine, settings.base_url)
            await services.start()
            _check_instance_key(services)
            return await work(services)
        finally:
            await services.close()

    return runtime.run(runner()) if long_running else asyncio.run(runner())


def create_private_sqlite_file(settings: Settings) -> None:
    """Make a missing SQLite file readable by its owner only: it holds every private key.
    (SQLite gives its -wal and -shm files the database file's permissions.)"""
    missing = missing_sqlite_file(settings)
    if missing is None or not missing.parent.is_dir():
        return  # the connection check says what is wrong with the directory
    with contextlib.suppress(FileExistsError):
        os.close(os.open(missing, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def require_database(settings: Settings) -> None:
    """ConfigError when the SQLite file is missing: opening it would create an empty one,
    which a command run in the wrong directory or with the wrong settings must not do."""
    missing = missing_sqlite_file(settings)
    if missing is not None:
        raise ConfigError(
            f"no database at {missing.absolute()}: run `fedi init` (or `fedi migrate`) first, "
            "or set FEDI_DATABASE_URL/--config to the server's"
        )


def _check_instance_key(services: Services) -> None:
    """Load the key now: a damaged one stops the command (and `fedi serve` before it
    listens) in one line, not the first signed request with a 500."""
    try:
        _ = services.signing_key().private_key
    except FediError:
        raise ConfigError(
            "the instance's private key in the database cannot be loaded, so the database "
            "is damaged; restore it from a backup"
        ) from None


def unexpected_error(exc: BaseException) -> str:
    """One line for an exception fedi did not expect: its kind and first line, redacted.

    Never the traceback or the full message: SQLAlchemy's carries the statement, and the
    database's DETAIL can quote a whole row (private key included).
    """
    kind = "database error" if hasattr(exc, "orig") else type(exc).__name__
    return redact(f"unexpected {kind}: {summary(exc)} (if this persists, report it)")


BACKLOG = 2048  # uvicorn's default


def listening_socket(host: str, port: int, fd: int | None) -> socket.socket:
    """The socket to serve on, listening: the inherited one (--fd), else host:port bound
    here, so that a port in use is one clear line rather than a server that never answers."""
    where = f"--fd {fd}" if fd is not None else f"{host}:{port}"
    if fd is not None:
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError as exc:
            raise FediError(f"--fd {fd} is not an open socket ({exc.strerror})") from None
        if sock.type != socket.SOCK_STREAM or sock.family not in (
            socket.AF_INET, socket.AF_INET6
        ):
            sock.close()
            raise FediError(f"--fd {fd} is not a TCP socket")
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        if fd is None:
            sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        hint = (
            "check the socket handed over" if fd is not None
            else "another server uses it; stop it or choose another --port"
            if exc.errno == errno.EADDRINUSE else "check --host and --port"
        )
        raise FediError(f"cannot listen on {where} ({exc.strerror}); {hint}") from None
    return sock


def serve(listener: socket.socket, app: Any, *, workers: int, **options: Any) -> None:
    """uvicorn on our own socket: one process, or `workers` processes sharing it.

    The socket goes to uvicorn as a socket object, not as `fd=`: uvicorn wraps a bare fd as
    an AF_UNIX socket, and TCP served that way stalled requests between two instances.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(app, workers=workers, **options)
    if workers > 1:
        Multiprocess(config, sockets=[listener]).run()
        return
    server = uvicorn.Server(config)
    server.run(sockets=[listener])
    if not server.started:
        raise FediError("the server stopped while starting; the log above says why")
