"""Group moderation: remove (announced), lock, per-group domain blocks, premoderation,
community report threshold, and the audit trail of every moderator action."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from fedi.activitypub.httpsig import sign_request
from fedi.activitypub.vocab import PUBLIC
from fedi.actors.local import create_group, create_user, find_local
from fedi.federation.reporting import report_post
from fedi.groups import moderation
from fedi.groups.posting import post_to_group
from fedi.moderation import audit
from fedi.moderation.blocks import BlockSettings, add_block
from fedi.store.models import OutboundActivity, Post
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

GROUP = f"{BASE_URL}/groups/g"


@dataclass
class World:
    fedi: InProcess
    remote: FakeRemote
    other: FakeRemote
    n: int = 0

    async def deliver(self, server: FakeRemote, name: str, activity: dict[str, Any]) -> None:
        actor = server.actors[name]
        body = json.dumps(activity).encode()
        inbox = f"{GROUP}/inbox"
        response = await self.fedi.http.post(inbox, content=body,
                                             headers=server.signed(actor, inbox, body))
        assert response.status_code == 202, response.text
        await self.fedi.services.processor.run_once()
        await self.fedi.services.delivery.run_once()

    async def join(self, server: FakeRemote, name: str) -> None:
        uri = server.actors[name].uri
        self.n += 1
        await self.deliver(server, name, {"id": f"{uri}/follow/{self.n}", "type": "Follow",
                                          "actor": uri, "object": GROUP})

    async def post(self, server: FakeRemote, name: str, reply_to: str | None = None) -> str:
        self.n += 1
        uri = server.actors[name].uri
        note: dict[str, Any] = {"id": f"{uri}/notes/{self.n}", "type": "Note",
                                "attributedTo": uri, "content": f"<p>note {self.n}</p>",
                                "to": [PUBLIC], "cc": [GROUP]}
        if reply_to:
            note["inReplyTo"] = reply_to
        await self.deliver(server, name, {"id": f"{uri}/create/{self.n}", "type": "Create",
                                          "actor": uri, "object": note, "to": [PUBLIC],
                                          "cc": [GROUP]})
        return str(note["id"])

    async def stored(self, uri: str) -> Post | None:
        async with self.fedi.services.sessionmaker() as session:
            return (await session.execute(select(Post).where(Post.uri == uri))).scalar_one_or_none()

    def received(self, server: FakeRemote, name: str, kind: str) -> list[dict[str, Any]]:
        return [p.json for p in server.posts
                if p.path == f"/users/{name}/inbox" and p.json.get("type") == kind]


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    remote, other = FakeRemote(publish_shared_inbox=False), FakeRemote(publish_shared_inbox=False)
    for index, name in enumerate(("ann", "ben")):
        remote.add_actor(name, key_index=index)
    other.add_actor("oli", key_index=2)
    await remote.start()
    await other.start()
    async with running_app(database_url) as fedi:
        async with fedi.services.sessionmaker() as session, session.begin():
            await create_user(session, fedi.services.urls, "owner")
            await create_user(session, fedi.services.urls, "lu")
            await create_group(session, fedi.services.urls, "g", owner="owner")
        built = World(fedi, remote, other)
        for name in ("ann", "ben"):
            await built.join(remote, name)
        await built.join(other, "oli")
        yield built
    await remote.stop()
    await other.stop()


async def _group(world: World) -> Any:
    async with world.fedi.services.sessionmaker() as session:
        return await find_local(session, "g")


async def test_removal_is_announced_and_the_post_is_gone(world: World) -> None:
    uri = await world.post(world.remote, "ann")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await moderation.remove_post(session, world.fedi.services.urls, await _group(world),
                                     uri, "off topic")
    await world.fedi.services.delivery.run_once()
    post = await world.stored(uri)
    assert post is not None and post.deleted_at is not None
    removals = world.received(world.remote, "ann", "Delete")
    assert removals and removals[0]["actor"] == GROUP and removals[0]["summary"] == "off topic"
    # Microblog members drop the group's boost of it.
    undos = world.received(world.remote, "ben", "Undo")
    assert undos and undos[0]["object"]["object"] == uri


async def test_locked_thread_refuses_replies(world: World) -> None:
    thread = await world.post(world.remote, "ann")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await moderation.set_locked(session, world.fedi.services.urls, await _group(world),
                                    thread, locked=True)
    reply = await world.post(world.remote, "ben", reply_to=thread)
    assert await world.stored(reply) is None
    assert world.received(world.remote, "ben", "Reject")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await moderation.set_locked(session, world.fedi.services.urls, await _group(world),
                                    thread, locked=False)
    assert await world.stored(await world.post(world.remote, "ben", reply_to=thread))


async def test_group_domain_block_keeps_a_server_out(world: World) -> None:
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await moderation.block_domain(session, await _group(world),
                                      f"127.0.0.1:{world.other.port}", block=True)
    refused = await world.post(world.other, "oli")
    assert await world.stored(refused) is None
    assert world.received(world.other, "oli", "Reject")
    await world.join(world.other, "oli")  # cannot rejoin
    assert world.received(world.other, "oli", "Reject")[-1]["object"]["type"] == "Follow"
    # Other servers are unaffected.
    assert await world.stored(await world.post(world.remote, "ann"))


async def test_premoderation_holds_new_posts_until_approved(world: World) -> None:
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await moderation.update_settings(session, await _group(world), premoderation=True)
    uri = await world.post(world.remote, "ann")
    post = await world.stored(uri)
    assert post is not None and post.held == "premoderation"
    assert not world.received(world.remote, "ben", "Announce")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await moderation.approve_post(session, world.fedi.services.urls, await _group(world), uri)
    await world.fedi.services.delivery.run_once()
    assert any(a["object"] == uri for a in world.received(world.remote, "ben", "Announce"))


async def test_enough_member_reports_hide_a_post_until_reviewed(world: World) -> None:
    uri = await world.post(world.remote, "ann")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await moderation.update_settings(session, await _group(world), report_threshold=2)
    async with world.fedi.services.sessionmaker() as session, session.begin():
        post = (await session.execute(select(Post).where(Post.uri == uri))).scalar_one()
        reporter = await find_local(session, "lu")
        await report_post(session, reporter, post, "spam")  # type: ignore[arg-type]
    assert (await world.stored(uri)).held is None  # type: ignore[union-attr]
    async with world.fedi.services.sessionmaker() as session, session.begin():
        post = (await session.execute(select(Post).where(Post.uri == uri))).scalar_one()
        owner = await find_local(session, "owner")
        await report_post(session, owner, post, "also spam")  # type: ignore[arg-type]
    hidden = await world.stored(uri)
    assert hidden is not None and hidden.held == "reports"
    async with world.fedi.services.sessionmaker() as session:
        log = await audit.for_group(session, (await _group(world)).id)
        assert [(e.action, e.target) for e in log] == [("group.auto-hide", uri)]
    async with world.fedi.services.sessionmaker() as session, session.begin():
        queue = [p.uri for p, _ in await moderation.held_posts(session, await _group(world))]
        assert queue == [uri]
        await moderation.approve_post(session, world.fedi.services.urls, await _group(world), uri)
    assert (await world.stored(uri)).held is None  # type: ignore[union-attr]


async def test_local_thread_hidden_by_reports_disappears_from_reads(world: World) -> None:
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await moderation.update_settings(session, await _group(world), report_threshold=1)
        owner, group = await find_local(session, "owner"), await find_local(session, "g")
        assert owner and group
        uri = (await post_to_group(session, world.fedi.services.urls, owner, group, "x")).post.uri
    assert (await world.fedi.http.get(uri, headers={"Accept": "text/html"})).status_code == 200
    async with world.fedi.services.sessionmaker() as session, session.begin():
        post = (await session.execute(select(Post).where(Post.uri == uri))).scalar_one()
        await report_post(session, await find_local(session, "lu"), post, None)  # type: ignore[arg-type]
    assert (await world.fedi.http.get(uri, headers={"Accept": "text/html"})).status_code == 404


async def test_pinning_is_announced_to_members(world: World) -> None:
    thread = await world.post(world.remote, "ann")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        group = await _group(world)
        post = (await session.execute(select(Post).where(Post.uri == thread))).scalar_one()
        await moderation.set_pinned(session, group, post, pinned=True,
                                    urls=world.fedi.services.urls)
    await world.fedi.services.delivery.run_once()
    featured = (await world.fedi.http.get(f"{GROUP}/featured",
                                          headers={"Accept": "application/activity+json"})).json()
    assert [item["id"] for item in featured["orderedItems"]] == [thread]
    async with world.fedi.services.sessionmaker() as session:
        bodies = [json.loads(b) for b in (await session.execute(
            select(OutboundActivity.body))).scalars()]
    adds = [b["object"] for b in bodies
            if b["type"] == "Announce" and isinstance(b["object"], dict)
            and b["object"].get("type") == "Add"]
    assert adds and adds[0]["object"] == thread and adds[0]["target"] == f"{GROUP}/featured"


async def test_silenced_servers_stay_out_of_public_collections(world: World) -> None:
    """Members still see a silenced server's replies; outsiders' collections do not list them."""
    async with world.fedi.services.sessionmaker() as session, session.begin():
        owner, group = await find_local(session, "owner"), await find_local(session, "g")
        assert owner and group
        thread = (await post_to_group(session, world.fedi.services.urls, owner, group,
                                      "Thread")).post.uri
    loud = await world.post(world.remote, "ann", reply_to=thread)
    quiet = await world.post(world.other, "oli", reply_to=thread)
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await add_block(session, f"127.0.0.1:{world.other.port}", BlockSettings("silence"),
                        who="test")
    world.fedi.services.domain_policy.invalidate()

    anonymous = (await world.fedi.http.get(
        f"{thread}/replies?page=1", headers={"Accept": "application/activity+json"})).json()
    assert anonymous["orderedItems"] == [loud]
    url = f"{thread}/replies?page=1"
    signed = sign_request("cavage", "GET", url, {"Accept": "application/activity+json"}, None,
                          world.remote.actors["ben"].key)
    member = (await world.fedi.http.get(url, headers=signed)).json()
    assert member["orderedItems"] == [loud, quiet]
