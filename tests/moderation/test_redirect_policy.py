"""A redirect (or a document naming another id) cannot lead an outbound fetch to a
suspended host: the client asks the domain policy on every request it makes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from fedi.activitypub.client import ClientSettings, FederationClient
from fedi.errors import FetchError
from tests.support.ports import port_of, reserve_port


@pytest.fixture
async def two_servers() -> AsyncIterator[tuple[int, int]]:
    allowed_sock, blocked_sock = reserve_port(), reserve_port()
    allowed_port, blocked_port = port_of(allowed_sock), port_of(blocked_sock)
    hits: list[str] = []

    async def redirect(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://127.0.0.1:{blocked_port}/doc")

    async def document(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.json_response({"id": f"http://127.0.0.1:{blocked_port}/doc", "type": "Note"},
                                 content_type="application/activity+json")

    runners = []
    for sock, handler in ((allowed_sock, redirect), (blocked_sock, document)):
        app = web.Application()
        app.router.add_get("/doc", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        runners.append(runner)
    yield allowed_port, blocked_port
    assert hits == [], "the suspended host was contacted"
    for runner in runners:
        await runner.cleanup()


async def test_redirect_to_a_suspended_host_is_refused(two_servers: tuple[int, int]) -> None:
    allowed, blocked = two_servers

    async def policy(host: str) -> str | None:
        return "suspended" if host == f"127.0.0.1:{blocked}" else None

    client = FederationClient(ClientSettings(allow_private_addresses=True), host_policy=policy)
    try:
        with pytest.raises(FetchError, match="suspended"):
            await client.fetch_object(f"http://127.0.0.1:{allowed}/doc", sign_as=None)
    finally:
        await client.close()
