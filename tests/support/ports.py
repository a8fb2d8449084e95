"""Loopback ports for in-test servers, held from the moment they are chosen.

A port picked and then released (bind to 0, close, hand the number on) can be taken by
another process before the server binds it; under `pytest -n 2` that happened. Instead a
test keeps the bound socket and gives it to the server: in-process servers serve on it,
`fedi serve` inherits it (`--fd`).
"""

from __future__ import annotations

import contextlib
import errno
import socket


def reserve_port(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to a free port and not yet listening (connections are refused).

    The port is bound explicitly, not as port 0: Linux keeps an explicitly bound port
    through `pause()`, so a restarted server gets the same port back. SO_REUSEADDR lets
    the server listen again past the TIME_WAIT connections its last run left; the kernel
    still never hands the port to another socket binding port 0 or connecting out.
    """
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:  # taken in between: nothing depends on it yet, pick again
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return sock
    raise RuntimeError("no free loopback port after 50 tries")


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def pause(sock: socket.socket) -> None:
    """Stop listening but keep the port: connections are refused again, as to a dead
    server, until a server listens on the socket again."""
    with contextlib.suppress(OSError):  # not listening: nothing to stop
        sock.shutdown(socket.SHUT_RDWR)
