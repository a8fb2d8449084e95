"""Live updates (issue 8 item 6), in process: the real app served by uvicorn on a loopback
port (fedi's own connection protocol), browsers as real HTTP clients reading the event
streams, posts made through the same use cases the web and the CLI call.

On PostgreSQL the events go through NOTIFY and the app's LISTEN connection, on SQLite
through the process's hub after commit; every test runs on both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select, text

from fedi.accounts import sessions
from fedi.actors.local import create_group, create_user
from fedi.app import create_app
from fedi.config import Settings
from fedi.groups.membership import join_local_group
from fedi.groups.posting import post_to_group
from fedi.live.events import PostEvent, decode
from fedi.live.hub import Hub
from fedi.live.listener import APPLICATION_NAME
from fedi.services import Services
from fedi.store.models import Actor, Group, Post
from fedi.web.connections import protocol
from tests.accounts.support import FAST
from tests.support.app import migrated
from tests.support.databases import using_postgres
from tests.support.instance import eventually
from tests.support.ports import port_of, reserve_port

WAIT = 15.0


class EventStream:
    """An SSE client: the post ids a stream sends, in order."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.retry: int | None = None

    async def next_id(self, wait: float = WAIT) -> int:
        fields: dict[str, str] = {}
        async with asyncio.timeout(wait):
            async for line in self._lines:
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                if "retry" in fields:
                    self.retry = int(fields["retry"])
                if fields.get("event") == "post":
                    data = json.loads(fields["data"])
                    assert data["url"] == f"/posts/{data['id']}/fragment"
                    assert fields["id"] == str(data["id"])
                    return int(data["id"])
                fields = {}
        raise AssertionError("the stream ended")

    async def ended(self, wait: float = WAIT) -> bool:
        async with asyncio.timeout(wait):
            async for _line in self._lines:
                pass
        return True


@dataclass
class Site:
    base_url: str
    services: Services
    server: uvicorn.Server
    app: Any

    @asynccontextmanager
    async def stream(self, path: str, cookie: str | None = None,
                     **headers: str) -> AsyncIterator[EventStream]:
        sent = {**headers, **({"Cookie": f"fedi_session={cookie}"} if cookie else {})}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=None) as http:
            async with http.stream("GET", path, headers=sent) as response:
                assert response.status_code == 200, await response.aread()
                assert response.headers["content-type"].startswith("text/event-stream")
                yield EventStream(response)

    async def get(self, path: str, cookie: str | None = None) -> httpx.Response:
        jar = {"fedi_session": cookie} if cookie else None
        async with httpx.AsyncClient(base_url=self.base_url, cookies=jar) as http:
            return await http.get(path)


@asynccontextmanager
async def site(database_url: str) -> AsyncIterator[Site]:
    listener = reserve_port()
    base_url = f"http://127.0.0.1:{port_of(listener)}"
    settings = Settings(base_url=base_url, database_url=database_url,
                        allow_private_addresses=True, **FAST)  # type: ignore[arg-type]
    await migrated(settings)
    app = create_app(settings, run_worker=False)
    server = uvicorn.Server(uvicorn.Config(
        app, http=protocol(10, 30), lifespan="on", log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    await eventually(lambda: server.started or serving.done(), timeout=30, what="started")
    assert not serving.done(), "the server did not start"
    services: Services = app.state.services
    if services.live_listener is not None:
        await asyncio.wait_for(services.live_listener.connected.wait(), WAIT)
    try:
        yield Site(base_url, services, server, app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
        listener.close()


@dataclass
class People:
    group: Actor
    olga: Actor  # owns (moderates) the group
    mia: Actor  # a member
    mia_cookie: str
    thread: int


async def people(services: Services) -> People:
    urls = services.urls
    async with services.sessionmaker() as session, session.begin():
        olga = await create_user(session, urls, "olga")
        mia = await create_user(session, urls, "mia")
        await session.flush()
        group = await create_group(session, urls, "cats", owner="olga")
        await session.flush()
        await join_local_group(session, urls, group, mia)
        cookie = await sessions.start(session, mia.id, None, days=1)
        thread = (await post_to_group(session, urls, olga, group, "First!",
                                      title="A thread")).post.id
    return People(group, olga, mia, cookie, thread)


async def say(services: Services, author: Actor, group: Actor, words: str, *,
              reply_to: int | None = None, visibility: str | None = None,
              title: str | None = None) -> int:
    async with services.sessionmaker() as session, session.begin():
        parent = await session.get(Post, reply_to) if reply_to else None
        published = await post_to_group(
            session, services.urls, author, group, words, title=title, visibility=visibility,
            reply_to=parent.uri if parent else None)
        return published.post.id


async def set_premoderation(services: Services, group: Actor, on: bool) -> None:
    async with services.sessionmaker() as session, session.begin():
        config = await session.get(Group, group.id)
        assert config is not None
        config.premoderation = on


async def test_a_thread_stream_sends_each_viewer_what_the_gate_lets_them_see(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        path = f"/live/threads/{cats.thread}"
        async with fedi.stream(path) as anonymous, \
                fedi.stream(path, cookie=cats.mia_cookie) as member:
            members_only = await say(fedi.services, cats.mia, cats.group, "Members only",
                                     reply_to=cats.thread, visibility="members")
            await set_premoderation(fedi.services, cats.group, True)
            held = await say(fedi.services, cats.mia, cats.group, "Held",
                             reply_to=cats.thread)
            await set_premoderation(fedi.services, cats.group, False)
            public = await say(fedi.services, cats.mia, cats.group, "For all",
                               reply_to=cats.thread)

            # Events arrive in commit order: what a stream skipped comes before what it got.
            assert await anonymous.next_id() == public
            assert await member.next_id() == members_only
            assert await member.next_id() == public
            assert anonymous.retry is not None and anonymous.retry > 0

        # The fragment the event points at asks the gate again.
        shown = await fedi.get(f"/posts/{members_only}/fragment", cookie=cats.mia_cookie)
        assert shown.status_code == 200 and f'id="p{members_only}"' in shown.text
        assert "Members only" in shown.text
        assert (await fedi.get(f"/posts/{members_only}/fragment")).status_code == 404
        # A held post is its author's to see (and the moderators'), no one else's.
        assert (await fedi.get(f"/posts/{held}/fragment")).status_code == 404
        assert "For all" in (await fedi.get(f"/posts/{public}/fragment")).text


async def test_a_group_stream_sends_new_threads_not_replies(database_url: str) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        async with fedi.stream("/live/groups/cats") as anonymous, \
                fedi.stream("/live/groups/cats", cookie=cats.mia_cookie) as member:
            await say(fedi.services, cats.mia, cats.group, "A reply", reply_to=cats.thread)
            hidden = await say(fedi.services, cats.mia, cats.group, "Ours",
                               title="Members' thread", visibility="members")
            unlisted = await say(fedi.services, cats.mia, cats.group, "Quiet",
                                 title="Unlisted thread", visibility="unlisted")
            open_thread = await say(fedi.services, cats.olga, cats.group, "Everyone",
                                    title="Open thread")
            assert await anonymous.next_id() == open_thread
            assert [await member.next_id() for _ in range(3)] == [hidden, unlisted, open_thread]
        assert (await fedi.get("/live/groups/dogs")).status_code == 404


async def test_a_reconnecting_stream_gets_what_it_missed(database_url: str) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        first = await say(fedi.services, cats.mia, cats.group, "One", reply_to=cats.thread)
        members_only = await say(fedi.services, cats.mia, cats.group, "Two",
                                 reply_to=cats.thread, visibility="members")
        third = await say(fedi.services, cats.mia, cats.group, "Three", reply_to=cats.thread)
        path = f"/live/threads/{cats.thread}"
        async with fedi.stream(path, **{"Last-Event-ID": str(first)}) as anonymous:
            assert await anonymous.next_id() == third
        async with fedi.stream(f"{path}?after={cats.thread}", cookie=cats.mia_cookie) as member:
            assert [await member.next_id() for _ in range(3)] == [first, members_only, third]
            later = await say(fedi.services, cats.mia, cats.group, "Four", reply_to=cats.thread)
            assert await member.next_id() == later


async def test_a_thread_the_viewer_may_not_see_has_no_stream(database_url: str) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        secret = await say(fedi.services, cats.mia, cats.group, "Ours", title="Secret",
                           visibility="members")
        assert (await fedi.get(f"/live/threads/{secret}")).status_code == 404
        assert (await fedi.get("/live/threads/999999")).status_code == 404
        async with fedi.stream(f"/live/threads/{secret}", cookie=cats.mia_cookie) as member:
            reply = await say(fedi.services, cats.mia, cats.group, "Re", reply_to=secret)
            assert await member.next_id() == reply


async def test_a_stalled_client_is_dropped_and_the_others_get_every_post(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        path = f"/live/threads/{cats.thread}"
        stalled, started = await stalled_client(fedi.app, path)
        await asyncio.wait_for(started.wait(), WAIT)
        try:
            async with fedi.stream(path) as reader:
                assert fedi.services.live.subscribers == 2
                # Batches of replies, each read by the reader before the next is stored: past
                # a queue's worth the stalled client has fallen behind and is gone.
                batch, sent = 8, 0
                while sent <= fedi.services.live.queue_size:
                    ids = await many_replies(fedi.services, cats, batch)
                    assert [await reader.next_id() for _ in range(batch)] == ids
                    sent += batch
                assert fedi.services.live.subscribers == 1
                assert not stalled.done()  # it waits on its client; it holds no subscription
        finally:
            stalled.cancel()


async def stalled_client(app: Any, path: str) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A client that takes the response's first bytes and then never reads again (its
    connection's buffers full): the app's next send waits for ever."""
    started = asyncio.Event()
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            started.set()
            await never.wait()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    return asyncio.create_task(app(scope, receive, send)), started


async def many_replies(services: Services, cats: People, count: int) -> list[int]:
    """`count` replies stored in one transaction: their events are published together."""
    async with services.sessionmaker() as session, session.begin():
        parent = await session.get(Post, cats.thread)
        assert parent is not None
        return [(await post_to_group(session, services.urls, cats.mia, cats.group, f"n{i}",
                                     reply_to=parent.uri)).post.id for i in range(count)]


async def test_open_streams_end_when_the_server_stops(database_url: str) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        async with fedi.stream(f"/live/threads/{cats.thread}") as reader:
            fedi.server.should_exit = True
            # uvicorn waits for open connections before it stops: the stream must end.
            assert await reader.ended(wait=5)


async def test_past_the_limit_a_stream_is_refused_and_the_page_still_works(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        fedi.services.live.max_subscribers = 1
        async with fedi.stream(f"/live/threads/{cats.thread}"):
            refused = await fedi.get(f"/live/threads/{cats.thread}")
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert (await fedi.get("/groups/cats")).status_code == 200


async def test_live_js_is_served_by_fedi_with_the_stylesheet_s_cache_headers(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        script = await fedi.get("/static/live.js")
        css = await fedi.get("/static/fedi.css")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["cache-control"] == css.headers["cache-control"]
        assert "EventSource" in script.text and "data-live" in script.text
        policy = script.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy


@pytest.mark.skipif(not using_postgres(), reason="LISTEN/NOTIFY: PostgreSQL only")
async def test_the_listener_comes_back_after_its_connection_is_killed(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        listener = fedi.services.live_listener
        assert listener is not None
        async with fedi.services.engine.connect() as conn:
            killed = (await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"),
                {"name": APPLICATION_NAME})).scalars().all()
        assert killed == [True]
        await eventually(lambda: not listener.connected.is_set(), timeout=WAIT,
                         what="the listener noticed")
        # Pages are served while it is away.
        assert (await fedi.get("/groups/cats")).status_code == 200
        await asyncio.wait_for(listener.connected.wait(), WAIT)
        async with fedi.stream(f"/live/threads/{cats.thread}") as reader:
            reply = await say(fedi.services, cats.mia, cats.group, "Back", reply_to=cats.thread)
            assert await reader.next_id() == reply


async def test_a_rolled_back_post_makes_no_event(database_url: str) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        async with fedi.stream(f"/live/threads/{cats.thread}") as reader:
            with pytest.raises(Abandoned):
                async with fedi.services.sessionmaker() as session, session.begin():
                    parent = (await session.execute(
                        select(Post).where(Post.id == cats.thread))).scalar_one()
                    await post_to_group(session, fedi.services.urls, cats.mia, cats.group,
                                        "Never", reply_to=parent.uri)
                    raise Abandoned
            kept = await say(fedi.services, cats.mia, cats.group, "Kept", reply_to=cats.thread)
            assert await reader.next_id() == kept


async def test_posts_committed_together_each_reach_the_stream_in_their_order(
    database_url: str,
) -> None:
    # On PostgreSQL one statement notifies the whole transaction's events (an inbox batch).
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        async with fedi.stream(f"/live/threads/{cats.thread}") as reader:
            async with fedi.services.sessionmaker() as session, session.begin():
                parent = (await session.execute(
                    select(Post).where(Post.id == cats.thread))).scalar_one()
                replies = [(await post_to_group(session, fedi.services.urls, cats.mia,
                                                cats.group, f"Reply {n}",
                                                reply_to=parent.uri)).post.id
                           for n in range(3)]
            assert [await reader.next_id() for _ in replies] == replies


async def test_the_hub_drops_a_full_subscriber_without_waiting_and_refuses_past_its_limit(
) -> None:
    hub = Hub(max_subscribers=2, queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    assert slow is not None and fast is not None and hub.subscribe() is None
    for n in range(1, 5):
        hub.publish(PostEvent(post_id=n, thread_id=1, group_id=1))  # never awaits
        # The fast one reads as events come; the slow one never does.
        assert await fast.next(0.1) == PostEvent(post_id=n, thread_id=1, group_id=1)
    assert slow.dropped and slow.closed and not fast.closed
    assert hub.subscribers == 1
    hub.close()
    assert fast.closed and hub.subscribe() is None


class Abandoned(Exception):
    pass


def test_only_well_formed_events_are_taken_from_the_channel() -> None:
    event = PostEvent(post_id=7, thread_id=3, group_id=2)
    assert decode(event.encode()) == event
    for bad in ("", "null", "[]", '{"kind":"post"}', '{"kind":"post","post_id":"7",'
                '"thread_id":3,"group_id":2}', '{"kind":"post","post_id":true,"thread_id":3,'
                '"group_id":2}', '{"kind":"other","post_id":7,"thread_id":3,"group_id":2}',
                '{"kind":"post","post_id":7,"thread_id":3,"group_id":0}'):
        assert decode(bad) is None, bad
