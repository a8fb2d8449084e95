"""Resolving @name@host: WebFinger, then a signed fetch, checked both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fedi.errors import FetchError
from tests.support.app import InProcess, running_app
from tests.support.remote import FakeRemote


@pytest.fixture
async def remote() -> AsyncIterator[FakeRemote]:
    server = FakeRemote()
    server.add_actor("alice", key_index=0)
    server.add_actor("mallory", key_index=1)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[InProcess]:
    async with running_app(database_url) as running:
        yield running


async def test_handle_resolves_to_the_actor(fedi: InProcess, remote: FakeRemote) -> None:
    async with fedi.services.sessionmaker() as session:
        actor = await fedi.services.resolver.resolve_handle(
            session, f"@alice@127.0.0.1:{remote.port}"
        )
    assert actor.uri == remote.actors["alice"].uri
    assert actor.inbox == remote.actors["alice"].inbox
    assert actor.shared_inbox == remote.shared_inbox


async def test_webfinger_pointing_at_someone_else_is_refused(
    fedi: InProcess, remote: FakeRemote
) -> None:
    remote.webfinger_links["alice"] = remote.actors["mallory"].uri
    async with fedi.services.sessionmaker() as session:
        with pytest.raises(FetchError, match="preferredUsername is 'mallory'"):
            await fedi.services.resolver.resolve_handle(session, f"alice@127.0.0.1:{remote.port}")


async def test_fetches_are_signed_by_the_instance_actor(
    fedi: InProcess, remote: FakeRemote
) -> None:
    seen: list[dict[str, str]] = []
    original = remote._actor

    async def recording(request):  # type: ignore[no-untyped-def]
        seen.append(dict(request.headers))
        return await original(request)

    remote._actor = recording  # type: ignore[method-assign]
    await remote.stop()
    await remote.start()
    async with fedi.services.sessionmaker() as session:
        await fedi.services.resolver.actor(session, remote.actors["alice"].uri)
    assert seen, "no fetch happened"
    assert 'keyId="http://fedi.test/actor#main-key"' in seen[0]["Signature"]
