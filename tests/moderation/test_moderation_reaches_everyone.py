"""Moderation reaches everyone who saw it: the group's pages show a removal, a lock and a pin
at once; the servers that received a post get its removal; a banned member gets nothing more
(what was queued only for them is dropped, a shared inbox other members use is kept); a
Mastodon member's report of the group's copy of a members-only post is about its author."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from fedi.activitypub.vocab import PUBLIC
from fedi.actors.local import create_group, create_user, find_local
from fedi.groups import moderation
from fedi.groups.posting import post_to_group
from fedi.store.models import Actor, Delivery, Host, OutboundActivity, Post, Report, now
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

GROUP = f"{BASE_URL}/groups/g"


@dataclass
class World:
    fedi: InProcess
    shared: FakeRemote  # ann and ben, one shared inbox
    alone: FakeRemote  # oli, the only member on that server

    async def deliver(self, server: FakeRemote, name: str, activity: dict[str, Any]) -> None:
        body = json.dumps(activity).encode()
        inbox = f"{GROUP}/inbox"
        response = await self.fedi.http.post(
            inbox, content=body, headers=server.signed(server.actors[name], inbox, body))
        assert response.status_code == 202, response.text
        await self.fedi.services.processor.run_once()

    async def local_thread(self, text: str, visibility: str | None = None) -> Post:
        async with self.fedi.services.sessionmaker() as session, session.begin():
            owner = await find_local(session, "owner")
            group = await find_local(session, "g")
            assert owner is not None and group is not None
            published = await post_to_group(session, self.fedi.services.urls, owner, group,
                                            text, title=text, visibility=visibility)
            return published.post

    async def pending(self, post_uri: str) -> dict[str, str]:
        """Inbox → state of the deliveries of the group's relay of one post."""
        async with self.fedi.services.sessionmaker() as session:
            rows = await session.execute(
                select(Delivery.inbox_url, Delivery.state, OutboundActivity.body)
                .join(OutboundActivity, OutboundActivity.id == Delivery.activity_id))
            return {inbox: state for inbox, state, body in rows.all() if post_uri in body
                    and json.loads(body)["type"] in ("Announce", "Create")}


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    shared, alone = FakeRemote(), FakeRemote()
    shared.add_actor("ann", key_index=0)
    shared.add_actor("ben", key_index=1)
    alone.add_actor("oli", key_index=2)
    await shared.start()
    await alone.start()
    async with running_app(database_url) as fedi:
        async with fedi.services.sessionmaker() as session, session.begin():
            await create_user(session, fedi.services.urls, "owner")
            await create_group(session, fedi.services.urls, "g", owner="owner")
            # ann and ben's server is threaded (Lemmy); oli's a microblog (unknown software).
            session.add(Host(host=f"127.0.0.1:{shared.port}", software="lemmy",
                             software_checked_at=now()))
        built = World(fedi, shared, alone)
        for server, name in ((shared, "ann"), (shared, "ben"), (alone, "oli")):
            uri = server.actors[name].uri
            await built.deliver(server, name, {"id": f"{uri}/follow", "type": "Follow",
                                               "actor": uri, "object": GROUP})
        await fedi.services.delivery.run_once()
        yield built
    await shared.stop()
    await alone.stop()


async def _actor(world: World, uri: str) -> Actor:
    async with world.fedi.services.sessionmaker() as session:
        return (await session.execute(select(Actor).where(Actor.uri == uri))).scalar_one()


async def _ban(world: World, server: FakeRemote, name: str) -> None:
    async with world.fedi.services.sessionmaker() as session, session.begin():
        group = await find_local(session, "g")
        assert group is not None
        member = await session.merge(await _actor(world, server.actors[name].uri))
        await moderation.ban(session, world.fedi.services.urls, group, member, by=None,
                             reason="spam")


async def test_a_ban_drops_what_was_queued_only_for_the_banned_member(world: World) -> None:
    post = await world.local_thread("queued while the member is banned")
    queued = await world.pending(post.uri)
    assert queued == {world.shared.shared_inbox: "pending", world.alone.shared_inbox: "pending"}
    await _ban(world, world.alone, "oli")
    await _ban(world, world.shared, "ben")
    # oli was the only member using their server's shared inbox: dropped. ann still uses the
    # other one: kept.
    assert await world.pending(post.uri) == {
        world.shared.shared_inbox: "pending", world.alone.shared_inbox: "dropped"}
    await world.fedi.services.delivery.run_once()
    got = [p.json for p in world.alone.posts]
    assert [a["type"] for a in got if a["type"] != "Accept"] == ["Block"], got
    assert world.alone.posts[-1].path == "/users/oli/inbox"  # the Block still went
    # Nothing newer goes to the banned member's server.
    later = await world.local_thread("after the ban")
    assert world.alone.shared_inbox not in await world.pending(later.uri)
    assert world.shared.shared_inbox in await world.pending(later.uri)


async def test_removal_lock_and_pin_show_at_once_and_reach_the_servers(world: World) -> None:
    thread = await world.local_thread("a thread to moderate")
    doomed = await world.local_thread("a thread to remove")
    await world.fedi.services.delivery.run_once()
    async with world.fedi.services.sessionmaker() as session, session.begin():
        group = await find_local(session, "g")
        assert group is not None
        urls = world.fedi.services.urls
        await moderation.set_locked(session, urls, group, thread.uri, locked=True)
        await moderation.set_pinned(session, group, await session.merge(thread), pinned=True,
                                    urls=urls)
        await moderation.remove_post(session, urls, group, doomed.uri, "off topic")
    page = (await world.fedi.http.get(thread.uri, headers={"Accept": "text/html"})).text
    assert "locked: no new replies" in page
    listing = (await world.fedi.http.get("/groups/g", headers={"Accept": "text/html"})).text
    assert '<span class="marker">pinned</span>' in listing
    assert "a thread to remove" not in listing
    gone = await world.fedi.http.get(doomed.uri, headers={"Accept": "text/html"})
    assert gone.status_code in (404, 410) and "a thread to remove" not in gone.text
    # Every server that received the posts is told: the threaded one by the group's
    # Announces, the microblog by the Undo of the group's boost.
    await world.fedi.services.delivery.run_once()
    threaded = [json.dumps(p.json) for p in world.shared.posts if p.json["type"] == "Announce"]
    assert any('"Delete"' in a and doomed.uri in a and "off topic" in a for a in threaded)
    assert any('"Lock"' in a and thread.uri in a for a in threaded)
    assert any('"Add"' in a and f"{GROUP}/featured" in a and thread.uri in a for a in threaded)
    undone = [p.json["object"] for p in world.alone.posts if p.json["type"] == "Undo"]
    assert any(u["type"] == "Announce" and u["object"] == doomed.uri for u in undone)

async def test_a_flag_of_the_groups_copy_reports_the_original_and_its_author(
    world: World,
) -> None:
    post = await world.local_thread("members only, reported from Mastodon", "members")
    await world.fedi.services.delivery.run_once()
    assert post.copy_uri is not None
    created = [p.json for p in world.alone.posts if p.json["type"] == "Create"]
    assert created and created[0]["object"]["id"] == post.copy_uri
    assert created[0]["object"]["attributedTo"] == GROUP
    oli = world.alone.actors["oli"].uri
    # What Mastodon sends: the account the status is attributed to, and the status.
    await world.deliver(world.alone, "oli", {
        "id": f"{oli}/flags/1", "type": "Flag", "actor": oli, "content": "not okay",
        "object": [GROUP, post.copy_uri], "to": [PUBLIC]})
    async with world.fedi.services.sessionmaker() as session:
        report = (await session.execute(select(Report))).scalar_one()
        target = await session.get(Actor, report.target_id)
        group = await find_local(session, "g")
    assert target is not None and group is not None
    assert target.uri == f"{BASE_URL}/users/owner"
    assert json.loads(report.post_uris) == [post.uri]
    assert report.group_id == group.id and report.comment == "not okay"
