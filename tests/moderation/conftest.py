from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fedi.actors.local import create_group, create_user
from fedi.moderation.blocks import BlockSettings, add_block
from fedi.moderation.policy import set_mode
from tests.support.app import InProcess, running_app
from tests.support.remote import FakeRemote


@pytest.fixture
async def remote() -> AsyncIterator[FakeRemote]:
    server = FakeRemote()
    server.add_actor("alice", key_index=0)
    server.add_actor("mod", key_index=1)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[InProcess]:
    async with running_app(database_url) as running:
        async with running.services.sessionmaker() as session, session.begin():
            await create_user(session, running.services.urls, "owner", admin=True)
            await create_group(session, running.services.urls, "cats", owner="owner")
        yield running


async def block(fedi: InProcess, domain: str, severity: str = "suspend", **flags: bool) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        await add_block(session, domain, BlockSettings(severity, **flags), who="test")
    fedi.services.domain_policy.invalidate()


async def federation_mode(fedi: InProcess, mode: str) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        await set_mode(session, mode)
    fedi.services.domain_policy.invalidate()
