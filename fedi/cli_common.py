"""What every `fedi` command shares: services built, checked, migrated and started, then
closed; the one line a failure prints; the socket `fedi serve` listens on."""

from __future__ import annotations

import asyncio
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
from fedi.store.identity import check_connection, check_identity, summary
from fedi.store.migrate import migrate


def with_services(
    settings: Settings, work: Callable[[Services], Awaitable[int]], *, long_running: bool = False
) -> int:
    """Run `work` with ready services (database checked and migrated, instance keys made)."""
    async def runner() -> int:
        services = build_services(settings)
        try:
            await check_connection(services.engine)
            await migrate(services.engine)
            await check_identity(services.engine, settings.base_url)
            await services.start()
            _check_instance_key(services)
            return await work(services)
        finally:
            await services.close()

    return runtime.run(runner()) if long_running else asyncio.run(runner())


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
