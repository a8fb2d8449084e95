"""Join policies in detail, moderators, and the group's collections (in process)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select, update

from fedi.actors.local import create_group, create_user, find_local
from fedi.groups import moderation
from fedi.groups.invites import create_invite, invite_url, revoke
from fedi.groups.posting import post_to_group
from fedi.groups.threads import find_post
from fedi.store.models import Actor, Follow, Invite
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

AP = {"Accept": "application/activity+json"}


@dataclass
class World:
    fedi: InProcess
    remote: FakeRemote

    async def join(self, name: str, group: str, **extra: Any) -> int:
        actor = self.remote.actors[name]
        target = f"{BASE_URL}/groups/{group}"
        body = json.dumps({"id": f"{actor.uri}/follows/{group}/{time.time()}", "type": "Follow",
                           "actor": actor.uri, "object": target, **extra}).encode()
        inbox = f"{target}/inbox"
        response = await self.fedi.http.post(
            inbox, content=body, headers=self.remote.signed(actor, inbox, body)
        )
        assert response.status_code == 202, response.text
        await self.fedi.services.processor.run_once()
        await self.fedi.services.delivery.run_once()
        return response.status_code

    async def state(self, name: str, group: str) -> str | None:
        async with self.fedi.services.sessionmaker() as session:
            row = await session.execute(
                select(Follow.state)
                .join(Actor, Actor.id == Follow.follower_id)
                .where(Actor.uri == self.remote.actors[name].uri,
                       Follow.target_id == (await find_local(session, group)).id)  # type: ignore[union-attr]
            )
            return row.scalar_one_or_none()

    async def group(self, name: str) -> Actor:
        async with self.fedi.services.sessionmaker() as session:
            found = await find_local(session, name)
        assert found is not None
        return found


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    remote = FakeRemote(publish_shared_inbox=False)
    for index, name in enumerate(("ann", "ben", "cid")):
        remote.add_actor(name, key_index=index)
    await remote.start()
    async with running_app(database_url) as fedi:
        urls = fedi.services.urls
        async with fedi.services.sessionmaker() as session, session.begin():
            await create_user(session, urls, "owner")
            await create_group(session, urls, "open", owner="owner", rules=["Be kind"])
            await create_group(session, urls, "vetted", owner="owner", join_policy="approval",
                               questions=["Do you own a cat?"])
            await create_group(session, urls, "club", owner="owner", join_policy="invite")
        yield World(fedi, remote)
    await remote.stop()


def last_answer(world: World, name: str) -> str | None:
    inbox_path = "/users/" + name + "/inbox"
    kinds = [p.json["type"] for p in world.remote.posts if p.path == inbox_path]
    return kinds[-1] if kinds else None


async def test_approval_waits_with_answers_then_approve_or_reject(world: World) -> None:
    await world.join("ann", "vetted", content="<p>Yes, two of them.</p>")
    assert await world.state("ann", "vetted") == "pending"
    assert last_answer(world, "ann") is None  # nothing sent yet
    group = await world.group("vetted")
    async with world.fedi.services.sessionmaker() as session:
        waiting = await moderation.pending(session, group)
    assert [(r.actor.uri, r.answers) for r in waiting] == [
        (world.remote.actors["ann"].uri, "Yes, two of them.")
    ]
    doc = (await world.fedi.http.get("/groups/vetted", headers=AP)).json()
    assert doc["manuallyApprovesFollowers"] is True
    assert doc["joinQuestions"] == ["Do you own a cat?"]

    async with world.fedi.services.sessionmaker() as session, session.begin():
        ann = (await session.execute(
            select(Actor).where(Actor.uri == world.remote.actors["ann"].uri))).scalar_one()
        await moderation.approve(session, world.fedi.services.urls, group, ann)
    await world.fedi.services.delivery.run_once()
    assert await world.state("ann", "vetted") == "accepted"
    assert last_answer(world, "ann") == "Accept"

    await world.join("ben", "vetted")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        ben = (await session.execute(
            select(Actor).where(Actor.uri == world.remote.actors["ben"].uri))).scalar_one()
        await moderation.reject(session, world.fedi.services.urls, group, ben)
    await world.fedi.services.delivery.run_once()
    assert await world.state("ben", "vetted") is None
    assert last_answer(world, "ben") == "Reject"


async def test_invites_expire_run_out_and_can_be_revoked(world: World) -> None:
    group = await world.group("club")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        once = await create_invite(session, group, None, max_uses=1)
        expiring = await create_invite(session, group, None, expires_in=3600)
        revoked = await create_invite(session, group, None)
        await revoke(session, group, revoked.token)
        tokens = (once.token, expiring.token, revoked.token)
    # No invite: refused.
    await world.join("ann", "club")
    assert await world.state("ann", "club") is None
    assert last_answer(world, "ann") == "Reject"
    # A revoked invite: refused.
    await world.join("ann", "club", instrument=invite_url(group, tokens[2]))
    assert last_answer(world, "ann") == "Reject"
    # A single-use invite admits one, then no more.
    await world.join("ann", "club", instrument=invite_url(group, tokens[0]))
    assert await world.state("ann", "club") == "accepted"
    await world.join("ben", "club", content=f"let me in: {invite_url(group, tokens[0])}")
    assert await world.state("ben", "club") is None
    # An invite past its expiry: refused.
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await session.execute(
            update(Invite).where(Invite.token == tokens[1]).values(expires_at=time.time() - 1)
        )
    await world.join("ben", "club", instrument=invite_url(group, tokens[1]))
    assert await world.state("ben", "club") is None
    assert last_answer(world, "ben") == "Reject"


async def test_invite_link_page_admits_the_named_account(world: World) -> None:
    """Mastodon users cannot attach an invite to a Follow: the link's page admits them."""
    group = await world.group("club")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        invite = await create_invite(session, group, None)
    link = invite_url(group, invite.token)
    page = await world.fedi.http.get(link)
    assert page.status_code == 200 and "Your account" in page.text
    handle = f"@cid@127.0.0.1:{world.remote.port}"
    done = await world.fedi.http.post(link, data={"account": handle})
    assert done.status_code == 200, done.text
    assert "Now follow" in done.text
    await world.join("cid", "club")
    assert await world.state("cid", "club") == "accepted"
    # Someone else is still refused.
    await world.join("ben", "club")
    assert await world.state("ben", "club") is None
    # A bad account name gets a clear error, and an unknown token is a 404.
    bad = await world.fedi.http.post(link, data={"account": "not a handle"})
    assert bad.status_code == 400 and "not a valid handle" in bad.text
    assert (await world.fedi.http.get(f"{group.uri}/invite/nope")).status_code == 404


async def test_banned_actor_cannot_join(world: World) -> None:
    await world.join("ann", "open")
    group = await world.group("open")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        ann = (await session.execute(
            select(Actor).where(Actor.uri == world.remote.actors["ann"].uri))).scalar_one()
        await moderation.ban(session, world.fedi.services.urls, group, ann, by=None,
                             reason="spam")
    await world.fedi.services.delivery.run_once()
    assert last_answer(world, "ann") == "Block"
    block = [p.json for p in world.remote.posts if p.json["type"] == "Block"][-1]
    assert block["object"] == world.remote.actors["ann"].uri and block["target"] == group.uri
    assert block["summary"] == "spam"
    await world.join("ann", "open")
    assert await world.state("ann", "open") is None
    assert last_answer(world, "ann") == "Reject"


async def test_moderators_are_published_and_changes_federated(world: World) -> None:
    await world.join("ann", "open")
    await world.join("ben", "open")
    group = await world.group("open")
    doc = (await world.fedi.http.get("/groups/open", headers=AP)).json()
    assert doc["attributedTo"] == f"{group.uri}/moderators"
    mods = (await world.fedi.http.get(f"{group.uri}/moderators", headers=AP)).json()
    assert mods["orderedItems"] == [f"{BASE_URL}/users/owner"]

    async with world.fedi.services.sessionmaker() as session, session.begin():
        ann = (await session.execute(
            select(Actor).where(Actor.uri == world.remote.actors["ann"].uri))).scalar_one()
        await moderation.set_moderator(session, world.fedi.services.urls, group, ann,
                                       appoint=True)
    await world.fedi.services.delivery.run_once()
    mods = (await world.fedi.http.get(f"{group.uri}/moderators", headers=AP)).json()
    assert mods["orderedItems"] == [f"{BASE_URL}/users/owner", world.remote.actors["ann"].uri]
    adds = [p.json for p in world.remote.posts if p.json["type"] == "Add"]
    assert {p.path for p in world.remote.posts if p.json["type"] == "Add"} == {
        "/users/ann/inbox", "/users/ben/inbox"}
    assert adds[0]["object"] == world.remote.actors["ann"].uri
    assert adds[0]["target"] == f"{group.uri}/moderators"

    async with world.fedi.services.sessionmaker() as session, session.begin():
        ann = await session.merge(ann)
        await moderation.set_moderator(session, world.fedi.services.urls, group, ann,
                                       appoint=False)
    await world.fedi.services.delivery.run_once()
    assert any(p.json["type"] == "Remove" for p in world.remote.posts)
    mods = (await world.fedi.http.get(f"{group.uri}/moderators", headers=AP)).json()
    assert mods["orderedItems"] == [f"{BASE_URL}/users/owner"]


async def test_collections_replies_context_featured_and_outbox(world: World) -> None:
    await world.join("ann", "open")
    urls = world.fedi.services.urls
    async with world.fedi.services.sessionmaker() as session, session.begin():
        owner = await find_local(session, "owner")
        group = await find_local(session, "open")
        assert owner and group
        thread = (await post_to_group(session, urls, owner, group, "Thread")).post.uri
        replies = [
            (await post_to_group(session, urls, owner, group, f"reply {n}", reply_to=thread)
             ).post.uri for n in range(25)
        ]
        await moderation.set_pinned(session, group, await _post(session, thread), pinned=True)
    http = world.fedi.http

    note = (await http.get(thread, headers=AP)).json()
    assert note["replies"] == f"{thread}/replies"
    context = note["context"]
    collection = (await http.get(note["replies"], headers=AP)).json()
    assert collection["totalItems"] == 25
    first = (await http.get(collection["first"], headers=AP)).json()
    assert first["orderedItems"] == replies[:20]
    second = (await http.get(first["next"], headers=AP)).json()
    assert second["orderedItems"] == replies[20:]

    thread_collection = (await http.get(context, headers=AP)).json()
    assert thread_collection["attributedTo"] == group.uri
    assert thread_collection["totalItems"] == 26
    reply_doc = (await http.get(replies[3], headers=AP)).json()
    assert reply_doc["context"] == context and reply_doc["inReplyTo"] == thread

    featured = (await http.get(f"{group.uri}/featured", headers=AP)).json()
    assert [item["id"] for item in featured["orderedItems"]] == [thread]
    assert (await http.get("/groups/open", headers=AP)).json()["featured"] == (
        f"{group.uri}/featured")

    outbox = (await http.get(f"{group.uri}/outbox", headers=AP)).json()
    assert outbox["totalItems"] >= 26  # an Announce per post, and the Accept
    page = (await http.get(outbox["first"], headers=AP)).json()
    assert page["type"] == "OrderedCollectionPage" and len(page["orderedItems"]) == 20

    members = (await http.get(f"{group.uri}/followers", headers=AP)).json()
    assert members["totalItems"] == 1
    listed = (await http.get(members["first"], headers=AP)).json()
    assert listed["orderedItems"] == [world.remote.actors["ann"].uri]


async def _post(session: Any, uri: str) -> Any:
    return await find_post(session, uri)
