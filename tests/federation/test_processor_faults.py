"""The inbox processor under database faults (issue 12 item 8; SECURITY 15, 21).

An activity answered 202 must not be lost: when the database connection dies while an item
is processed, the item is processed again (released early, or claimed again after its
lease), never marked failed. Only a handler's own bug marks an item failed, in one log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from fedi.activitypub.parse import IncomingActivity
from fedi.config import Settings
from fedi.federation.processor import InboxProcessor
from fedi.handlers import HandlerContext
from fedi.services import Services, build_services
from fedi.store.migrate import migrate
from fedi.store.models import InboxItem
from fedi.worker_loop import poll_loop
from tests.support.databases import postgres_server_url, using_postgres
from tests.support.instance import eventually

REMOTE = "https://remote.example"


@pytest.fixture
async def services(database_url: str) -> AsyncIterator[Services]:
    made = build_services(Settings(base_url="http://fedi.test", database_url=database_url))
    await migrate(made.engine)
    yield made
    await made.close()


async def store_items(services: Services, count: int) -> list[str]:
    ids = [f"{REMOTE}/activities/{n}" for n in range(count)]
    rows = [
        {"activity_uri": uri, "actor_uri": f"{REMOTE}/users/m", "recipient": None,
         "body": json.dumps({"id": uri, "type": "Like", "actor": f"{REMOTE}/users/m",
                             "object": "http://fedi.test/posts/1"}),
         "state": "new", "attempts": 0, "claimed_until": 0.0, "received_at": time.time()}
        for uri in ids
    ]
    async with services.sessionmaker() as session, session.begin():
        await session.execute(insert(InboxItem), rows)
    return ids


async def states(services: Services) -> Counter[str]:
    async with services.sessionmaker() as session:
        found = await session.execute(select(InboxItem.state, func.count())
                                      .group_by(InboxItem.state))
        return Counter(dict(found.all()))  # type: ignore[arg-type]


@pytest.mark.skipif(not using_postgres(), reason="needs PostgreSQL (FEDI_TEST_DATABASE_URL): "
                    "the fault is the server terminating this database's connections")
async def test_items_in_flight_when_the_database_drops_connections_end_done(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    total = 60
    await store_items(services, total)
    handled: Counter[str] = Counter()

    async def like(context: HandlerContext, activity: IncomingActivity) -> None:
        # Real work on the item's own connection, slow enough to be cut off mid-item.
        await context.session.execute(text("SELECT pg_sleep(0.05)"))
        handled[activity.id] += 1

    processor = InboxProcessor(services.sessionmaker, services.resolver, services.urls,
                               {"Like": like}, lease_seconds=3.0)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO)
    loop = asyncio.create_task(poll_loop(lambda: processor.run_once(limit=10), stop,
                                         idle_seconds=0.1))
    server = postgres_server_url()
    assert server is not None
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    database = make_url(services.settings.database_url).database
    # The test looks on its own connections, made afresh each time: the pool of `services`
    # is the processor's, and the fault is aimed at it.
    watcher = create_async_engine(services.settings.database_url, poolclass=NullPool)

    async def done() -> int:
        try:
            async with watcher.connect() as conn:
                return int((await conn.execute(text(
                    "SELECT count(*) FROM inbox_items WHERE state = 'done'"))).scalar_one())
        except DBAPIError:
            return 0  # cut off too: ask again

    try:
        for threshold in (10, 30):
            await eventually(lambda n=threshold: _at_least(done(), n), interval=0.02,  # type: ignore[misc]
                             what=f"{threshold} items done")
            async with admin.connect() as conn:
                killed = (await conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database})).scalar()
            assert killed, "no connection of the processor was terminated"
        await eventually(lambda: _at_least(done(), total), what="every item done")
    finally:
        stop.set()
        await loop
        await admin.dispose()
        await watcher.dispose()

    assert await states(services) == Counter({"done": total})  # none failed, none left
    assert set(handled) == {f"{REMOTE}/activities/{n}" for n in range(total)}
    cut_off = [r for r in caplog.records if "database connection lost" in r.getMessage()]
    assert cut_off, "the fault never hit an item in flight; nothing was tested"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def _at_least(count: Awaitable[int], expected: int) -> bool:
    return await count >= expected


async def test_a_handler_bug_fails_its_item_in_one_line_and_the_rest_go_on(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await store_items(services, 3)

    async def like(context: HandlerContext, activity: IncomingActivity) -> None:
        if activity.id == ids[1]:
            raise KeyError("a bug")

    processor = InboxProcessor(services.sessionmaker, services.resolver, services.urls,
                               {"Like": like})
    assert await processor.run_once() == 3
    async with services.sessionmaker() as session:
        found = {uri: (state, error) for uri, state, error in (await session.execute(
            select(InboxItem.activity_uri, InboxItem.state, InboxItem.error))).all()}
    assert found[ids[1]] == ("failed", "internal error: KeyError: 'a bug'")
    assert found[ids[0]][0] == found[ids[2]][0] == "done"
    [line] = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert line.exc_info is None and "\n" not in line.getMessage()
