"""An inbox batch makes its remote fetches between its transactions, never inside one.

Waiting on a remote server inside the batch's transaction held SQLite's write lock for the
whole fetch: under a flood of Follows from new servers (each asks the server's NodeInfo) the
inbox could not store a fetched key for 30 s and answered 500 (bench.serve_fanout's join).
Here the remote server itself looks at the database while it is being asked: the items before
the one that fetches are committed, no transaction is open, and the item that fetched runs
again with what was fetched, in order with the rest.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import insert, select, text

from fedi.activitypub.parse import IncomingActivity
from fedi.errors import FetchError
from fedi.federation.processor import InboxProcessor
from fedi.federation.receive import HostPolicy, allow_all
from fedi.handlers import HandlerContext
from fedi.services import Services
from fedi.store.models import Actor, Host, InboxItem
from tests.support.app import InProcess, running_app
from tests.support.remote import FakeRemote


@dataclass
class WatchingRemote(FakeRemote):
    """A remote whose object and actor fetches first look at fedi's database."""

    services: Services | None = None
    database_url: str = ""
    delay: float = 0.0
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/users/{name}", self._watched_actor)
        app.router.add_get("/objects/{id}", self._watched_object)
        await self.serve(app)

    async def _watched_object(self, request: web.Request) -> web.StreamResponse:
        await self._look(request.path)
        return await self._object(request)

    async def _watched_actor(self, request: web.Request) -> web.StreamResponse:
        await self._look(request.path)
        return await self._actor(request)

    async def _look(self, path: str) -> None:
        assert self.services is not None
        async with self.services.sessionmaker() as session:
            states = dict((await session.execute(
                select(InboxItem.activity_uri, InboxItem.state))).all())
        self.seen.append({"path": path, "states": states,
                          "open": await open_transactions(self.services, self.database_url)})
        await asyncio.sleep(self.delay)


async def open_transactions(services: Services, url: str) -> int:
    """Transactions open on the database besides this check's own: on SQLite, whether the
    write lock is free (taken with no wait); on PostgreSQL, sessions idle in a transaction."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.split("///", 1)[1], timeout=0, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            return 0
        except sqlite3.OperationalError:
            return 1
        finally:
            connection.close()
    async with services.sessionmaker() as session:
        return int((await session.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%'"))).scalar_one())


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[InProcess]:
    async with running_app(database_url) as running:
        yield running


@pytest.fixture
async def remote(fedi: InProcess, database_url: str) -> AsyncIterator[WatchingRemote]:
    server = WatchingRemote(services=fedi.services, database_url=database_url)
    server.add_actor("newcomer")
    for name, content in (("note", "fetched"), ("other", "other")):
        server.objects[name] = {"id": f"{server.base_url}/objects/{name}", "type": "Note",
                                "content": content}
    await server.start()
    yield server
    await server.stop()


async def store(services: Services, actor: str, names: list[str]) -> list[str]:
    uris = [f"{actor}/activities/{name}" for name in names]
    async with services.sessionmaker() as session, session.begin():
        await session.execute(insert(InboxItem), [
            {"activity_uri": uri, "actor_uri": actor, "recipient": None,
             "body": json.dumps({"id": uri, "type": "Like", "actor": actor, "object": name}),
             "state": "new", "attempts": 0, "claimed_until": 0.0, "received_at": time.time()}
            for uri, name in zip(uris, names, strict=True)])
    return uris


async def marked(services: Services) -> list[str]:
    async with services.sessionmaker() as session:
        return list((await session.execute(select(Host.host).order_by(Host.host))).scalars())


def processor_for(fedi: InProcess, remote: FakeRemote, log: list[str],
                  lease_seconds: float = 120.0,
                  host_policy: HostPolicy = allow_all) -> InboxProcessor:
    """Items named `fetch` (and `fetch-again`) fetch a remote note, `actor` the remote
    newcomer, `gone` a note that is not there; each item marks a host row named after itself
    and what it got."""
    async def like(context: HandlerContext, activity: IncomingActivity) -> None:
        name = str(activity.object_id)
        log.append(name)
        got = ""
        if name in ("fetch", "fetch-again"):
            note = "note" if name == "fetch" else "other"
            got = (await context.resolver.fetch(f"{remote.base_url}/objects/{note}"))["content"]
        elif name == "actor":
            actor = await context.resolver.actor(context.session,
                                                 remote.actors["newcomer"].uri)
            got = actor.username
        elif name == "gone":
            try:
                await context.resolver.fetch(f"{remote.base_url}/objects/gone")
            except FetchError as exc:
                got = f"status-{exc.status}"
        context.session.add(Host(host=f"{name}-{got}.example" if got else f"{name}.example",
                                 failures=0, down_until=0.0, gone=False))
        await context.session.flush()

    return InboxProcessor(fedi.services.sessionmaker, fedi.services.resolver, fedi.services.urls,
                          {"Like": like}, lease_seconds=lease_seconds,
                          host_policy=host_policy)


async def test_a_fetch_waits_for_no_open_transaction_and_the_item_runs_with_what_it_got(
    fedi: InProcess, remote: WatchingRemote,
) -> None:
    actor = f"{remote.base_url}/users/someone"
    uris = await store(fedi.services, actor, ["a", "fetch", "actor", "gone", "b"])
    log: list[str] = []
    assert await processor_for(fedi, remote, log).run_once() == 5

    # Each fetch came with nothing of the batch's transaction open, and after the items
    # before it had committed.
    assert [seen["path"] for seen in remote.seen] == [
        "/objects/note", "/users/newcomer", "/objects/gone"]
    assert [seen["open"] for seen in remote.seen] == [0, 0, 0]
    assert [seen["states"][uris[0]] for seen in remote.seen] == ["done"] * 3
    assert remote.seen[0]["states"][uris[1]] == "new"
    assert remote.seen[1]["states"][uris[1]] == "done"
    assert remote.seen[2]["states"][uris[2]] == "done"

    # The item that needed a fetch ran again with it (its first run rolled back), in order;
    # a failed fetch reaches the handler as the error it was, status and all.
    assert log == ["a", "fetch", "fetch", "actor", "actor", "gone", "gone", "b"]
    assert await marked(fedi.services) == [
        "a.example", "actor-newcomer.example", "b.example", "fetch-fetched.example",
        "gone-status-404.example"]
    async with fedi.services.sessionmaker() as session:
        states = dict((await session.execute(
            select(InboxItem.activity_uri, InboxItem.state))).all())
        stored = (await session.execute(
            select(Actor.uri).where(Actor.uri == remote.actors["newcomer"].uri))).scalar()
    assert states == dict.fromkeys(uris, "done")
    assert stored == remote.actors["newcomer"].uri
    assert remote.fetches == {"objects/note": 1, "newcomer": 1, "objects/gone": 1}


async def test_items_left_when_half_the_lease_is_gone_go_back_to_the_queue(
    fedi: InProcess, remote: WatchingRemote,
) -> None:
    remote.delay = 0.3
    actor = f"{remote.base_url}/users/someone"
    uris = await store(fedi.services, actor, ["a", "fetch", "fetch-again", "b"])
    log: list[str] = []
    processor = processor_for(fedi, remote, log, lease_seconds=0.4)
    assert await processor.run_once() == 4
    async with fedi.services.sessionmaker() as session:
        rows = {uri: (state, attempts, until) for uri, state, attempts, until in (
            await session.execute(select(InboxItem.activity_uri, InboxItem.state,
                                         InboxItem.attempts, InboxItem.claimed_until))).all()}
    # The first fetch is made whatever the time; it took longer than half the lease, so
    # rather than make a second one, "fetch-again" and "b" went back: due at once, and this
    # claim did not count as an attempt.
    assert {uri: rows[uri][:2] for uri in uris} == {
        uris[0]: ("done", 1), uris[1]: ("done", 1), uris[2]: ("new", 0), uris[3]: ("new", 0)}
    assert all(rows[uri][2] <= time.time() for uri in uris[2:])
    assert log == ["a", "fetch", "fetch", "fetch-again"]
    assert remote.fetches == {"objects/note": 1}

    # The next batch runs them, with a fetch of its own.
    assert await processor.run_once() == 2
    assert await marked(fedi.services) == [
        "a.example", "b.example", "fetch-again-other.example", "fetch-fetched.example"]
    assert remote.fetches == {"objects/note": 1, "objects/other": 1}


async def test_the_host_policy_is_asked_with_no_transaction_open(
    fedi: InProcess, remote: WatchingRemote, database_url: str,
) -> None:
    """The domain policy reads with a connection of its own. Asked inside the batch, on
    SQLite, that connection waited for a pool taken by requests waiting for the batch's write
    lock: every one of them stuck for the busy timeout, and the inbox answered 500."""
    actor = f"{remote.base_url}/users/someone"
    await store(fedi.services, actor, ["a", "b"])
    asked: list[tuple[str, int]] = []

    async def policy(host: str) -> str | None:
        asked.append((host, await open_transactions(fedi.services, database_url)))
        return None

    log: list[str] = []
    processor = processor_for(fedi, remote, log, host_policy=policy)
    assert await processor.run_once() == 2
    assert log == ["a", "b"]
    assert asked == [(f"127.0.0.1:{remote.port}", 0)]
