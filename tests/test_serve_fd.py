"""`fedi serve --fd`: a test server's port is held from the moment it is chosen.

Servers in tests used to get a port that was picked, released and bound again later; under
`pytest -n 2` another process took it in between (Errno 98, address already in use). Now the
test binds the socket, keeps it, and `fedi serve` inherits it, one process or several.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support.instance import FediInstance

pytestmark = pytest.mark.federation


def taken_by_someone_else(port: int, reuse: bool = False) -> bool:
    """Whether another socket could bind the port now (reuse: with SO_REUSEADDR, as
    aiohttp and uvicorn bind, which only a listening socket excludes)."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuse))
        try:
            other.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def answers(url: str) -> bool:
    return httpx.get(url, timeout=10).status_code == 200


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except httpx.ConnectError:
        return True
    return False


@pytest.mark.parametrize("processes", [1, 2])
async def test_the_port_is_held_across_starts_stops_and_kills(
    instances: list[FediInstance], processes: int
) -> None:
    a = instances[0]
    nodeinfo = f"{a.base_url}/.well-known/nodeinfo"
    # Chosen, not yet served: nobody else can take the port, and it refuses connections.
    assert not taken_by_someone_else(a.port)
    assert refused(nodeinfo)
    for stop in (a.stop, a.kill):
        a.start(["--workers", str(processes)])
        assert answers(nodeinfo)
        assert not taken_by_someone_else(a.port, reuse=True)
        # A kept-alive connection the server closes as it stops leaves a TIME_WAIT on the
        # port: the restart must listen past it.
        async with httpx.AsyncClient() as client:
            assert (await client.get(nodeinfo, timeout=10)).status_code == 200
            stop()
        # Down like a dead server (refused, not hanging), and the port is still ours.
        assert refused(nodeinfo)
        assert not taken_by_someone_else(a.port)
    a.start()
    assert answers(nodeinfo)


def test_serve_refuses_an_fd_that_is_not_a_tcp_socket(instances: list[FediInstance]) -> None:
    a = instances[0]
    result = a.cli("serve", "--fd", "0", check=False)  # stdin: not a socket
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("fedi: error: --fd 0 is not")
