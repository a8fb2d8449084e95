"""Deliveries get their host in its one spelling (SECURITY 22): an inbox written as
`[::ffff:127.0.0.1]:PORT` and one written as `127.0.0.1:PORT` share one host row, so one
backoff, breaker and gone mark."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.delivery.queue import queue_view, retry_host
from fedi.services import build_services
from fedi.store.migrate import migrate
from fedi.store.models import Host
from tests.delivery.test_worker import Clock, World
from tests.support.remote import FakeRemote


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    settings = Settings(base_url="http://fedi.test", database_url=database_url,
                        allow_private_addresses=True)
    services = build_services(settings)
    await migrate(services.engine)
    await services.start()
    async with services.sessionmaker() as session, session.begin():
        await create_user(session, services.urls, "owner")
        group = await create_group(session, services.urls, "cats", owner="owner")
    yield World(services, group, Clock())
    await services.close()


@pytest.fixture
async def remote() -> AsyncIterator[FakeRemote]:
    server = FakeRemote()
    await server.start()
    yield server
    await server.stop()


async def test_every_spelling_of_an_inbox_host_lands_on_one_host_row(
    world: World, remote: FakeRemote
) -> None:
    plain = f"127.0.0.1:{remote.port}"
    inboxes = [
        f"http://{plain}/users/a/inbox",
        f"http://[::ffff:127.0.0.1]:{remote.port}/users/b/inbox",
        f"http://[::FFFF:7F00:1]:{remote.port}/users/c/inbox",
    ]
    remote.statuses = [500]  # a failing host gets a row in `hosts`
    await world.send(*inboxes)
    assert {d.host for d in await world.deliveries()} == {plain}

    await world.worker().run_once()
    async with world.services.sessionmaker() as session:
        hosts = list((await session.execute(select(Host))).scalars())
        assert [h.host for h in hosts] == [plain]  # one breaker for the three spellings
        # The admin may type it either way too.
        view = await queue_view(session, host=f"[::ffff:127.0.0.1]:{remote.port}")
        assert view.counts == {"pending": 3}
    async with world.services.sessionmaker() as session, session.begin():
        retried = await retry_host(session, f"[::ffff:127.0.0.1]:{remote.port}",
                                   world.clock.now)
    assert retried.host == plain and retried.rows == 3
