"""Who may reply: a reply the post's rule excludes is refused (Reject) and not relayed;
'approval' holds it for a moderator; the rule is published as GoToSocial's
interactionPolicy and FEP-5624's canReply."""

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
from fedi.store.models import Actor, OutboundActivity, Post
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

GROUP = f"{BASE_URL}/groups/g"
AP = {"Accept": "application/activity+json"}


@dataclass
class World:
    fedi: InProcess
    remote: FakeRemote
    sent: int = 0

    async def deliver(self, name: str, activity: dict[str, Any]) -> None:
        actor = self.remote.actors[name]
        inbox = f"{GROUP}/inbox"
        body = json.dumps(activity).encode()
        response = await self.fedi.http.post(
            inbox, content=body, headers=self.remote.signed(actor, inbox, body)
        )
        assert response.status_code == 202, response.text
        await self.fedi.services.processor.run_once()
        await self.fedi.services.delivery.run_once()

    async def reply(self, name: str, parent: str) -> str:
        self.sent += 1
        actor = self.remote.actors[name].uri
        note = {"id": f"{actor}/notes/{self.sent}", "type": "Note", "attributedTo": actor,
                "content": f"<p>reply {self.sent}</p>", "inReplyTo": parent,
                "to": [PUBLIC], "cc": [GROUP], "tag": [{"type": "Mention", "href": GROUP}]}
        await self.deliver(name, {"id": f"{actor}/creates/{self.sent}", "type": "Create",
                                  "actor": actor, "object": note, "to": note["to"],
                                  "cc": note["cc"]})
        return note["id"]

    async def thread(self, replies: str, mention: str | None = None) -> str:
        urls = self.fedi.services.urls
        async with self.fedi.services.sessionmaker() as session, session.begin():
            owner, group = await find_local(session, "owner"), await find_local(session, "g")
            assert owner and group
            mentions = []
            if mention:
                mentions = [(await session.execute(select(Actor).where(
                    Actor.uri == self.remote.actors[mention].uri))).scalar_one()]
            result = await post_to_group(session, urls, owner, group, "Thread",
                                         replies=replies, mentions=mentions)
        await self.fedi.services.delivery.run_once()
        return result.post.uri

    async def stored(self, uri: str) -> Post | None:
        async with self.fedi.services.sessionmaker() as session:
            return (await session.execute(select(Post).where(Post.uri == uri))).scalar_one_or_none()

    async def relayed(self, uri: str) -> bool:
        """The group announced this post (whoever, under the no-flood rule, receives it)."""
        async with self.fedi.services.sessionmaker() as session:
            bodies = (await session.execute(select(OutboundActivity.body))).scalars()
            return any(json.loads(b)["type"] == "Announce" and uri in b for b in bodies)

    def got(self, name: str, kind: str, uri: str) -> bool:
        path = f"/users/{name}/inbox"
        return any(p.path == path and p.json.get("type") == kind and uri in p.body.decode()
                   for p in self.remote.posts)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    remote = FakeRemote(publish_shared_inbox=False)
    for index, name in enumerate(("member", "other", "outsider")):
        remote.add_actor(name, key_index=index)
    await remote.start()
    async with running_app(database_url) as fedi:
        async with fedi.services.sessionmaker() as session, session.begin():
            await create_user(session, fedi.services.urls, "owner")
            await create_group(session, fedi.services.urls, "g", owner="owner")
        built = World(fedi, remote)
        for name in ("member", "other"):
            await built.deliver(name, {"id": f"{remote.actors[name].uri}/follow",
                                       "type": "Follow", "actor": remote.actors[name].uri,
                                       "object": GROUP})
        async with fedi.services.sessionmaker() as session, session.begin():
            await fedi.services.resolver.actor(session, remote.actors["outsider"].uri)
        yield built
    await remote.stop()


async def test_members_rule_refuses_outsiders(world: World) -> None:
    thread = await world.thread("members")
    document = (await world.fedi.http.get(thread, headers=AP)).json()
    assert document["canReply"] == f"{GROUP}/followers"
    assert document["interactionPolicy"]["canReply"]["automaticApproval"] == [
        f"{BASE_URL}/users/owner", GROUP, f"{GROUP}/followers"]

    refused = await world.reply("outsider", thread)
    assert await world.stored(refused) is None
    assert world.got("outsider", "Reject", refused)
    assert not await world.relayed(refused)

    accepted = await world.reply("member", thread)
    assert await world.stored(accepted) is not None
    assert await world.relayed(accepted)


async def test_nobody_and_mentioned_rules(world: World) -> None:
    closed = await world.thread("nobody")
    refused = await world.reply("member", closed)
    assert await world.stored(refused) is None
    assert world.got("member", "Reject", refused)
    assert not await world.relayed(refused)

    for_other = await world.thread("mentioned", mention="other")
    assert (await world.fedi.http.get(for_other, headers=AP)).json()["interactionPolicy"][
        "canReply"]["automaticApproval"] == [f"{BASE_URL}/users/owner",
                                             world.remote.actors["other"].uri]
    refused = await world.reply("member", for_other)
    assert await world.stored(refused) is None
    allowed = await world.reply("other", for_other)
    assert await world.stored(allowed) is not None


async def test_anyone_rule_lets_outsiders_reply(world: World) -> None:
    thread = await world.thread("anyone")
    assert (await world.fedi.http.get(thread, headers=AP)).json()["canReply"] == PUBLIC
    reply = await world.reply("outsider", thread)
    assert await world.stored(reply) is not None
    assert await world.relayed(reply)


async def test_approval_rule_holds_outsiders_for_a_moderator(world: World) -> None:
    thread = await world.thread("approval")
    policy = (await world.fedi.http.get(thread, headers=AP)).json()["interactionPolicy"]
    assert policy["canReply"]["manualApproval"] == [PUBLIC]
    held = await world.reply("outsider", thread)
    post = await world.stored(held)
    assert post is not None and post.held == "reply-approval"
    assert not await world.relayed(held)
    # Not visible to others while it waits.
    assert (await world.fedi.http.get(f"{thread}/replies?page=1", headers=AP)).json()[
        "orderedItems"] == []
    async with world.fedi.services.sessionmaker() as session, session.begin():
        group = await find_local(session, "g")
        assert group is not None
        queue = await moderation.held_posts(session, group)
        assert [p.uri for p, _ in queue] == [held]
        await moderation.approve_post(session, world.fedi.services.urls, group, held)
    await world.fedi.services.delivery.run_once()
    assert await world.relayed(held)
    assert world.got("outsider", "Accept", held)
    assert (await world.fedi.http.get(f"{thread}/replies?page=1", headers=AP)).json()[
        "orderedItems"] == [held]

    # A member's reply under the same rule goes through at once.
    direct = await world.reply("member", thread)
    assert (await world.stored(direct)).held is None  # type: ignore[union-attr]
