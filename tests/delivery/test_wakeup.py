"""New deliveries wake the delivery worker at commit, not at its next poll (issue 13 item 7)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

import pytest

from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.delivery.enqueue import enqueue
from fedi.delivery.wakeup import listen, listen_sqlite
from fedi.services import Services, build_services
from fedi.store.migrate import migrate
from fedi.store.models import Actor
from tests.support.databases import using_postgres

ANNOUNCE = {"id": "http://fedi.test/activities/1", "type": "Announce",
            "object": "http://fedi.test/posts/1"}


async def _services(database_url: str) -> tuple[Services, Actor]:
    services = build_services(Settings(base_url="http://fedi.test", database_url=database_url,
                                       allow_private_addresses=True))
    await migrate(services.engine)
    await services.start()
    async with services.sessionmaker() as session, session.begin():
        await create_user(session, services.urls, "owner")
        group = await create_group(session, services.urls, "cats", owner="owner")
    return services, group


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[tuple[Services, Actor]]:
    services, group = await _services(database_url)
    yield services, group
    await services.close()


async def test_committed_deliveries_wake_the_worker(world: tuple[Services, Actor]) -> None:
    services, group = world
    services.delivery_wake.clear()
    async with services.sessionmaker() as session, session.begin():
        await enqueue(session, group, {**ANNOUNCE, "actor": group.uri},
                      ["http://a.example/inbox"])
        assert not services.delivery_wake.is_set()  # not before the commit
    assert services.delivery_wake.is_set()


async def test_rollback_and_other_writes_wake_nobody(world: tuple[Services, Actor]) -> None:
    services, group = world
    services.delivery_wake.clear()
    with contextlib.suppress(RuntimeError):
        async with services.sessionmaker() as session, session.begin():
            await enqueue(session, group, {**ANNOUNCE, "actor": group.uri},
                          ["http://a.example/inbox"])
            raise RuntimeError("rolled back")
    async with services.sessionmaker() as session, session.begin():
        await create_user(session, services.urls, "someone")
    assert not services.delivery_wake.is_set()
    # The rolled-back mark does not linger into the next transaction of a reused session.
    async with services.sessionmaker() as session:
        async with session.begin():
            await enqueue(session, group, {**ANNOUNCE, "id": "http://fedi.test/activities/2",
                                           "actor": group.uri}, ["http://a.example/inbox"])
            await session.rollback()
        async with session.begin():
            await create_user(session, services.urls, "another")
    assert not services.delivery_wake.is_set()


async def test_savepoints_wake_at_the_outer_commit_and_a_rolled_back_one_keeps_the_rest(
    world: tuple[Services, Actor],
) -> None:
    # The inbox processor runs each item of a batch in a savepoint; SQLAlchemy sends commit
    # and rollback events for those too.
    services, group = world
    services.delivery_wake.clear()
    async with services.sessionmaker() as session, session.begin():
        async with session.begin_nested():
            await enqueue(session, group, {**ANNOUNCE, "actor": group.uri},
                          ["http://a.example/inbox"])
        with contextlib.suppress(RuntimeError):
            async with session.begin_nested():
                raise RuntimeError("the next item fails")
        assert not services.delivery_wake.is_set()  # the rows are not committed yet
    assert services.delivery_wake.is_set()


@pytest.mark.skipif(not using_postgres(), reason="LISTEN/NOTIFY is PostgreSQL's")
async def test_another_process_commit_wakes_a_listening_worker(database_url: str) -> None:
    # Two Services on one database stand for `fedi post` and a `fedi worker` process.
    poster, group = await _services(database_url)
    worker = build_services(Settings(base_url="http://fedi.test", database_url=database_url,
                                     allow_private_addresses=True))
    woken = asyncio.Event()
    stop = asyncio.Event()
    listening = asyncio.create_task(listen(database_url, woken.set, stop))
    try:
        await asyncio.wait_for(woken.wait(), 10)  # woken once on connecting
        woken.clear()
        async with poster.sessionmaker() as session, session.begin():
            await create_user(session, poster.urls, "someone")
        await asyncio.sleep(0.3)
        assert not woken.is_set()  # other commits say nothing
        async with poster.sessionmaker() as session, session.begin():
            await enqueue(session, group, {**ANNOUNCE, "actor": group.uri},
                          ["http://a.example/inbox"])
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        stop.set()
        await listening
        await worker.close()
        await poster.close()


COMMIT_IN_ANOTHER_PROCESS = """
import asyncio, sys
from fedi.actors.local import create_user
from fedi.config import Settings
from fedi.delivery.enqueue import enqueue
from fedi.services import build_services
from fedi.store.models import Actor

async def main(url: str, deliveries: bool, group_id: int) -> None:
    services = build_services(Settings(base_url="http://fedi.test", database_url=url))
    async with services.sessionmaker() as session, session.begin():
        if deliveries:
            group = await session.get_one(Actor, group_id)
            await enqueue(session, group, {"id": "http://fedi.test/activities/9",
                          "type": "Announce", "actor": group.uri,
                          "object": "http://fedi.test/posts/1"}, ["http://a.example/inbox"])
        else:
            await create_user(session, services.urls, "someone")
    await services.engine.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2] == "deliveries", int(sys.argv[3])))
"""


async def commit_in_another_process(database_url: str, what: str, group: Actor) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", COMMIT_IN_ANOTHER_PROCESS, database_url, what, str(group.id))
    assert await child.wait() == 0


@pytest.mark.skipif(using_postgres(), reason="the datagram is SQLite's")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's abstract sockets")
async def test_on_sqlite_another_process_commit_wakes_the_listening_worker(
    world: tuple[Services, Actor], database_url: str
) -> None:
    # `fedi post` beside `fedi serve` on one SQLite file: its commit wakes the worker at once,
    # not at the worker's next poll.
    woken, stop = asyncio.Event(), asyncio.Event()
    listening = asyncio.create_task(listen_sqlite(database_url, woken.set, stop))
    # A second worker on the same file finds the address taken: it returns, and polls.
    await asyncio.wait_for(listen_sqlite(database_url, woken.set, asyncio.Event()), 5)
    try:
        await commit_in_another_process(database_url, "users", world[1])
        await asyncio.sleep(0.2)
        assert not woken.is_set()  # other commits say nothing
        await commit_in_another_process(database_url, "deliveries", world[1])
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        stop.set()
        await listening
