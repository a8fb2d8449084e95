"""The streaming API (issue 10 item 6): the real app served by uvicorn on a loopback port,
clients speaking real WebSocket (the `websockets` library) and server-sent events (httpx),
posts and replies made through the use cases the web, the CLI and the API call.

Events reach the streams through the process's hub (SQLite) or NOTIFY (PostgreSQL); every
test runs on both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fedi.accounts import oauth
from fedi.accounts import scopes as scope_rules
from fedi.actors.local import create_user
from fedi.api.streaming import TRY_AGAIN_LATER, Feed
from fedi.api.streams import Frame, Watcher
from fedi.groups.membership import join_local_group
from fedi.groups.posting import delete_post, edit_post
from fedi.groups.viewers import viewer_for, viewers_for
from fedi.live.events import DeleteEvent, EditEvent, NoticeEvent, PostEvent, decode
from fedi.live.hub import Hub
from fedi.services import Services
from fedi.store.models import Actor, Follow, GroupBan, OAuthToken, Post
from tests.api.support import api_app, make_group, make_user
from tests.web.test_live import People, Site, people, say, site

WAIT = 15.0
QUIET = 1.5  # how long "nothing more arrives" is watched for, after a later event arrived


async def token(services: Services, person: Actor | None, scopes: str = "read") -> str:
    async with services.sessionmaker() as session, session.begin():
        app, _ = await oauth.register_app(
            session, name="stream tests", redirect_uris=[oauth.OOB],
            scopes=scope_rules.parse("read write follow push"))
        issued = await oauth.issue_token(session, app, person.id if person else None,
                                         scope_rules.parse(scopes))
    return issued.access_token


async def person(services: Services, name: str) -> Actor:
    async with services.sessionmaker() as session, session.begin():
        return await create_user(session, services.urls, name)


def ws_url(fedi: Site, query: str = "", path: str = "/api/v1/streaming") -> str:
    return fedi.base_url.replace("http://", "ws://") + path + (f"?{query}" if query else "")


class Socket:
    """A streaming client's frames, decoded (payloads too)."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def subscribe(self, stream: str, **more: str) -> None:
        await self.connection.send(json.dumps({"type": "subscribe", "stream": stream, **more}))

    async def frame(self, wait: float = WAIT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), wait)
        assert isinstance(raw, str), "frames are text"
        found: dict[str, Any] = json.loads(raw)
        if isinstance(found.get("payload"), str) and found.get("event") in (
                "update", "status.update", "notification"):
            found["status_or_notification"] = json.loads(found["payload"])
        return found

    async def update(self, wait: float = WAIT) -> dict[str, Any]:
        """The next update's Status (other events skipped)."""
        while True:
            found = await self.frame(wait)
            if found.get("event") == "update":
                status: dict[str, Any] = found["status_or_notification"]
                return status

    async def silent(self, wait: float = QUIET) -> bool:
        try:
            extra = await self.frame(wait)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected frame {extra}")


@asynccontextmanager
async def socket(fedi: Site, query: str = "", *, path: str = "/api/v1/streaming",
                 **options: Any) -> AsyncIterator[Socket]:
    async with connect(ws_url(fedi, query, path), open_timeout=WAIT, **options) as connection:
        yield Socket(connection)


async def test_the_user_stream_sends_a_reply_in_a_joined_group_as_a_status(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        mia = await token(fedi.services, cats.mia)
        async with socket(fedi, "stream=user",
                          additional_headers={"Authorization": f"Bearer {mia}"}) as home:
            reply = await say(fedi.services, cats.olga, cats.group, "Hello *mia*",
                              reply_to=cats.thread)
            frame = await home.frame()
            assert frame["stream"] == ["user"] and frame["event"] == "update"
            assert isinstance(frame["payload"], str)  # JSON text inside the JSON frame
            status = frame["status_or_notification"]
            assert status["id"] == str(reply)
            assert status["in_reply_to_id"] == str(cats.thread)
            assert status["account"]["username"] == "olga"
            assert "<em>mia</em>" in status["content"]
            assert status["visibility"] == "public"
            assert status["fedi"]["group"]["acct"] == "cats"


async def test_a_members_only_post_reaches_members_and_never_anyone_else(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        outsider = await person(fedi.services, "ned")
        async with fedi.services.sessionmaker() as session, session.begin():
            # ned follows olga: her posts are his home's, but the gate still decides.
            session.add(Follow(follower_id=outsider.id, target_id=cats.olga.id,
                               state="accepted"))
        member_token = await token(fedi.services, cats.mia)
        outsider_token = await token(fedi.services, outsider)
        async with socket(fedi, f"access_token={member_token}&stream=user") as member, \
                socket(fedi, f"access_token={outsider_token}&stream=public") as other, \
                socket(fedi, f"access_token={member_token}&stream=public:local") as listing:
            await other.subscribe("user")
            await other.subscribe("hashtag", tag="cats")
            secret = await say(fedi.services, cats.olga, cats.group, "Only us #cats",
                               visibility="members", title="Members")
            public = await say(fedi.services, cats.olga, cats.group, "Everyone #cats",
                               title="Open")

            assert (await member.update())["id"] == str(secret)
            assert (await member.update())["id"] == str(public)
            # Events arrive in commit order: the outsider's first frames are the later post's.
            seen = [await other.frame() for _ in range(3)]
            assert {tuple(f["stream"]) for f in seen} == {
                ("public",), ("hashtag", "cats"), ("user",)}
            assert {f["status_or_notification"]["id"] for f in seen} == {str(public)}
            assert await other.silent()
            # A public listing never carries a members-only post, not even to a member.
            assert (await listing.update())["id"] == str(public)
            assert await listing.silent()


async def test_a_reply_to_me_is_a_notification_and_its_edit_and_deletion_follow(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        mine = await say(fedi.services, cats.mia, cats.group, "My thread", title="Mia's")
        mia = await token(fedi.services, cats.mia)
        async with socket(fedi, f"access_token={mia}&stream=user:notification") as bell, \
                socket(fedi, f"access_token={mia}&stream=user") as home:
            reply = await say(fedi.services, cats.olga, cats.group, "Nice one",
                              reply_to=mine)
            frame = await bell.frame()
            assert frame["stream"] == ["user:notification"]
            assert frame["event"] == "notification"
            notice = frame["status_or_notification"]
            assert notice["type"] == "mention"
            assert notice["account"]["username"] == "olga"
            assert notice["status"]["id"] == str(reply)
            assert await bell.silent()  # no updates on the notification stream

            # The user stream carries both: the reply (in a joined group) and the notice.
            events = {(await home.frame())["event"] for _ in range(2)}
            assert events == {"update", "notification"}

            async with fedi.services.sessionmaker() as session, session.begin():
                post = await session.get(Post, reply)
                assert post is not None
                await edit_post(session, fedi.services.urls, cats.olga, post.uri, "Very nice")
            edited = await home.frame()
            assert edited["event"] == "status.update" and edited["stream"] == ["user"]
            assert edited["status_or_notification"]["id"] == str(reply)
            assert "Very nice" in edited["status_or_notification"]["content"]
            assert edited["status_or_notification"]["edited_at"] is not None

            async with fedi.services.sessionmaker() as session, session.begin():
                post = await session.get(Post, reply)
                assert post is not None
                await delete_post(session, fedi.services.urls, cats.olga, post.uri)
            gone = await home.frame()
            assert gone == {"stream": ["user"], "event": "delete", "payload": str(reply)}


async def test_a_token_in_the_subprotocol_is_echoed_and_subscriptions_multiplex(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        mia = await token(fedi.services, cats.mia)
        async with socket(fedi, path="/api/v1/streaming/", subprotocols=[mia]) as sock:
            assert sock.connection.subprotocol == mia
            await sock.subscribe("public:local")
            await sock.subscribe("user")
            first = await say(fedi.services, cats.olga, cats.group, "Both", title="Both")
            got = {tuple((await sock.frame())["stream"]) for _ in range(2)}
            assert got == {("public:local",), ("user",)}
            await sock.connection.send(json.dumps({"type": "unsubscribe", "stream": "user"}))
            await sock.connection.send("not json")
            error = await sock.frame()
            assert error["status"] == 400 and "subscribe" in error["error"]
            await sock.subscribe("hashtag")  # no tag
            assert "tag" in (await sock.frame())["error"]
            second = await say(fedi.services, cats.olga, cats.group, "Once", title="Once")
            frame = await sock.frame()
            assert frame["stream"] == ["public:local"]
            assert frame["status_or_notification"]["id"] == str(second) != str(first)
            assert await sock.silent()


async def test_bad_tokens_and_missing_scopes_are_refused_at_the_handshake(
    database_url: str,
) -> None:
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        writer = await token(fedi.services, cats.mia, "write")
        app_only = await token(fedi.services, None, "read")
        statuses_only = await token(fedi.services, cats.mia, "read:statuses")
        for query, status in [("stream=user", 401), ("access_token=nope&stream=user", 401),
                              (f"access_token={app_only}&stream=public", 401),
                              (f"access_token={writer}&stream=user", 403),
                              (f"access_token={statuses_only}&stream=user:notification", 403),
                              (f"access_token={statuses_only}&stream=list", 400)]:
            with pytest.raises(InvalidStatus) as refused:
                async with socket(fedi, query):
                    pass
            assert refused.value.response.status_code == status, query
            assert b"error" in refused.value.response.body
        async with socket(fedi, f"access_token={statuses_only}&stream=user") as sock:
            await sock.subscribe("user:notification")
            assert (await sock.frame())["status"] == 403


async def test_a_revoked_token_ends_the_stream(database_url: str, monkeypatch: Any) -> None:
    monkeypatch.setattr("fedi.api.streaming.RECHECK_SECONDS", 0.0)
    monkeypatch.setattr("fedi.api.streaming.KEEPALIVE_SECONDS", 0.2)
    async with site(database_url) as fedi:
        cats = await people(fedi.services)
        mia = await token(fedi.services, cats.mia)
        async with socket(fedi, f"access_token={mia}&stream=user") as sock:
            async with fedi.services.sessionmaker() as session, session.begin():
                grant = await oauth.find_token(session, mia)
                assert grant is not None
                row = await session.get(OAuthToken, grant.token_id)
                assert row is not None
                row.revoked_at = 1.0
            with pytest.raises(ConnectionClosed) as closed:
                await sock.frame()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


@asynccontextmanager
async def sse(fedi: Site, path: str, bearer: str) -> AsyncIterator[httpx.Response]:
    async with httpx.AsyncClient(base_url=fedi.base_url, timeout=None) as http:
        async with http.stream("GET", path, headers={"Authorization": f"Bearer {bearer}"}
                               ) as response:
            yield response


async def sse_event(lines: AsyncIterator[str], wait: float = WAIT) -> tuple[str, str]:
    fields: dict[str, str] = {}
    async with asyncio.timeout(wait):
        async for line in lines:
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif fields:
                return fields["event"], fields["data"]
    raise AssertionError("the stream ended")


async def test_server_sent_events_deliver_the_same(database_url: str) -> None:
    async with site(database_url) as fedi:
        cats: People = await people(fedi.services)
        outsider = await person(fedi.services, "ned")
        mia = await token(fedi.services, cats.mia)
        ned = await token(fedi.services, outsider)
        async with httpx.AsyncClient(base_url=fedi.base_url) as http:
            health = await http.get("/api/v1/streaming/health")
            assert health.status_code == 200 and health.text == "OK"
            refused = await http.get("/api/v1/streaming/user")
            assert refused.status_code == 401 and "error" in refused.json()
            no_tag = await http.get("/api/v1/streaming/hashtag",
                                    headers={"Authorization": f"Bearer {mia}"})
            assert no_tag.status_code == 400 and "tag" in no_tag.json()["error"]
        async with sse(fedi, "/api/v1/streaming/user", mia) as home, \
                sse(fedi, "/api/v1/streaming/public", ned) as public:
            assert home.status_code == 200
            assert home.headers["content-type"].startswith("text/event-stream")
            home_lines, public_lines = home.aiter_lines(), public.aiter_lines()
            secret = await say(fedi.services, cats.olga, cats.group, "Members",
                               reply_to=cats.thread, visibility="members")
            open_reply = await say(fedi.services, cats.olga, cats.group, "All",
                                   reply_to=cats.thread)
            event, data = await sse_event(home_lines)
            assert event == "update" and json.loads(data)["id"] == str(secret)
            assert json.loads((await sse_event(home_lines))[1])["id"] == str(open_reply)
            event, data = await sse_event(public_lines)
            assert event == "update" and json.loads(data)["id"] == str(open_reply)


def test_every_live_event_survives_its_notify_payload_and_junk_does_not_decode() -> None:
    for event in (PostEvent(3, 1, 2), PostEvent(4, 4, None), DeleteEvent(5, 2),
                  DeleteEvent(6, None), EditEvent(8, 2, 1700000000.25), NoticeEvent(7, 3)):
        assert decode(event.encode()) == event
    for junk in ('{"kind":"notice","notice_id":0,"recipient_id":1}', '{"kind":"notice"}',
                 '{"kind":"delete","post_id":true,"group_id":null}', '{"kind":"delete",'
                 '"post_id":5,"group_id":"x"}', '{"kind":"other","post_id":1}', "[]", "{",
                 '{"kind":"edit","post_id":1,"group_id":null,"edited":true}'):
        assert decode(junk) is None, junk


async def test_viewers_for_many_agrees_with_viewer_for_each(database_url: str) -> None:
    """Streams load every client's viewer at once; the gate must see the same people."""
    async with api_app(database_url) as fedi:
        olga = await make_user(fedi, "olga")
        cats = await make_group(fedi, "cats", "olga")
        dogs = await make_group(fedi, "dogs", "olga")
        mia, ned, zed = [await make_user(fedi, n) for n in ("mia", "ned", "zed")]
        async with fedi.services.sessionmaker() as session, session.begin():
            await join_local_group(session, fedi.services.urls, cats, mia)
            await join_local_group(session, fedi.services.urls, dogs, mia)
            await join_local_group(session, fedi.services.urls, cats, ned)
            session.add(GroupBan(group_id=dogs.id, actor_id=ned.id))
        async with fedi.services.sessionmaker() as session:
            many = await viewers_for(session, [olga, mia, ned, zed, mia])
            for actor in (olga, mia, ned, zed):
                assert many[actor.id] == await viewer_for(session, actor.uri)
        assert many[mia.id].member_of == {cats.uri, dogs.uri}
        assert many[ned.id].banned_from == {dogs.uri} and many[olga.id].moderates(dogs.uri)
        assert many[zed.id].member_of == frozenset()



class Echo:
    """A watcher that turns each notice event into one frame (the feed is under test)."""

    async def frames(self, event: NoticeEvent) -> list[Frame]:
        return [Frame(["user"], "notification", str(event.notice_id))]


async def test_a_client_that_falls_behind_is_dropped_with_try_again_later() -> None:
    hub = Hub(max_subscribers=2, queue_size=2)
    subscription = hub.subscribe()
    assert subscription is not None
    feed = Feed(cast(Services, None), cast(Watcher, Echo()), subscription, "token")
    for n in range(1, 4):  # three events for a queue of two: the reader is too slow
        hub.publish(NoticeEvent(n, 1))
    assert subscription.dropped and hub.subscribers == 0
    # What was queued before the drop is still sent, then the stream ends: "try again later".
    assert [f.payload for f in await feed.next() or []] == ["1"]
    assert [f.payload for f in await feed.next() or []] == ["2"]
    assert await feed.next() is None
    assert feed.ended_because == TRY_AGAIN_LATER
