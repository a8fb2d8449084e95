"""Moderators on other servers moderate a local group with signed activities in Lemmy's
shapes: each kind is applied by the same use case a local moderator calls, audited under the
remote moderator's id and announced; from a non-moderator it changes nothing."""

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
from fedi.store.models import (
    Actor,
    AuditEntry,
    Follow,
    GroupBan,
    GroupRole,
    Host,
    InboxItem,
    Post,
    now,
)
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

GROUP = f"{BASE_URL}/groups/g"


@dataclass
class World:
    fedi: InProcess
    remote: FakeRemote
    n: int = 0

    def uri(self, name: str) -> str:
        return self.remote.actors[name].uri

    async def deliver(self, name: str, activity: dict[str, Any]) -> InboxItem:
        actor = self.remote.actors[name]
        body = json.dumps(activity).encode()
        inbox = f"{GROUP}/inbox"
        response = await self.fedi.http.post(inbox, content=body,
                                             headers=self.remote.signed(actor, inbox, body))
        assert response.status_code == 202, response.text
        await self.fedi.services.processor.run_once()
        await self.fedi.services.delivery.run_once()
        async with self.fedi.services.sessionmaker() as session:
            item = (await session.execute(
                select(InboxItem).where(InboxItem.activity_uri == activity["id"])
            )).scalar_one()
        assert item.state == "done", item.error
        return item

    def activity(self, name: str, kind: str, obj: Any, **extra: Any) -> dict[str, Any]:
        self.n += 1
        return {"id": f"{self.uri(name)}/activities/{self.n}", "type": kind,
                "actor": self.uri(name), "object": obj, "to": [PUBLIC], "cc": [GROUP],
                "audience": GROUP, **extra}

    async def post(self, name: str, reply_to: str | None = None) -> str:
        self.n += 1
        uri = self.uri(name)
        note: dict[str, Any] = {"id": f"{uri}/notes/{self.n}", "type": "Note",
                                "attributedTo": uri, "content": f"<p>note {self.n}</p>",
                                "to": [PUBLIC], "cc": [GROUP]}
        if reply_to:
            note["inReplyTo"] = reply_to
        await self.deliver(name, self.activity(name, "Create", note))
        return str(note["id"])

    async def row(self, uri: str) -> Post | None:
        async with self.fedi.services.sessionmaker() as session:
            return (await session.execute(select(Post).where(Post.uri == uri))).scalar_one_or_none()

    async def audit(self) -> list[tuple[str, str, str, str | None]]:
        async with self.fedi.services.sessionmaker() as session:
            rows = await session.execute(select(AuditEntry).order_by(AuditEntry.id))
            return [(e.who, e.action, e.target, e.reason) for e in rows.scalars()]

    async def banned(self, name: str) -> bool:
        async with self.fedi.services.sessionmaker() as session:
            found = await session.execute(
                select(GroupBan.id).join(Actor, Actor.id == GroupBan.actor_id)
                .where(Actor.uri == self.uri(name)))
            return found.first() is not None

    async def role(self, name: str) -> str | None:
        async with self.fedi.services.sessionmaker() as session:
            return (await session.execute(
                select(GroupRole.role).join(Actor, Actor.id == GroupRole.actor_id)
                .where(Actor.uri == self.uri(name)))).scalar_one_or_none()

    def received(self, name: str, kind: str) -> list[dict[str, Any]]:
        return [p.json for p in self.remote.posts
                if p.path == f"/users/{name}/inbox" and p.json.get("type") == kind]


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    remote = FakeRemote(publish_shared_inbox=False)
    for index, name in enumerate(("mia", "ann", "ben", "zed", "olga")):
        remote.add_actor(name, key_index=index % 3)
    await remote.start()
    async with running_app(database_url) as fedi:
        async with fedi.services.sessionmaker() as session, session.begin():
            await create_user(session, fedi.services.urls, "owner")
            await create_group(session, fedi.services.urls, "g", owner="owner")
            # A threaded server (Lemmy): its members get the group's Announces of changes.
            session.add(Host(host=f"127.0.0.1:{remote.port}", software="lemmy",
                             software_checked_at=now()))
        built = World(fedi, remote)
        for name in ("mia", "ann", "ben", "zed", "olga"):
            await built.deliver(name, {"id": f"{built.uri(name)}/follow", "type": "Follow",
                                       "actor": built.uri(name), "object": GROUP})
        async with fedi.services.sessionmaker() as session, session.begin():
            group = await find_local(session, "g")
            assert group is not None
            mia = (await session.execute(
                select(Actor).where(Actor.uri == built.uri("mia")))).scalar_one()
            await moderation.set_moderator(session, fedi.services.urls, group, mia, appoint=True)
            # The group's ownership went to an account on another server.
            olga = (await session.execute(
                select(Actor).where(Actor.uri == built.uri("olga")))).scalar_one()
            session.add(GroupRole(group_id=group.id, actor_id=olga.id, role="owner"))
        yield built
    await remote.stop()


async def test_delete_by_a_moderator_removes_the_post_and_is_audited(world: World) -> None:
    uri = await world.post("ann")
    removal = world.activity("mia", "Delete", uri, summary="spam")
    item = await world.deliver("mia", removal)
    post = await world.row(uri)
    assert post is not None and post.deleted_at is not None and post.held == "removed"
    assert (world.uri("mia"), "group.remove", uri, "spam") in await world.audit()
    assert item.error == f"remove by remote moderator {world.uri('mia')}"
    # Announced as for a local moderator: the group's Delete reaches the author and members.
    told = world.received("ann", "Delete")
    assert told and told[0]["actor"] == GROUP and told[0]["summary"] == "spam"
    assert any(a["object"]["type"] == "Delete" and a["object"]["object"]["id"] == uri
               for a in world.received("zed", "Announce") if isinstance(a["object"], dict))


async def test_remove_with_the_group_as_target_removes_the_post(world: World) -> None:
    uri = await world.post("ann")
    await world.deliver("mia", world.activity("mia", "Remove", uri, target=GROUP))
    post = await world.row(uri)
    assert post is not None and post.deleted_at is not None
    assert (world.uri("mia"), "group.remove", uri, None) in await world.audit()


async def test_an_author_still_deletes_their_own_post(world: World) -> None:
    uri = await world.post("ann")
    await world.deliver("ann", world.activity("ann", "Delete", uri))
    post = await world.row(uri)
    assert post is not None and post.deleted_at is not None and post.held is None
    assert not [e for e in await world.audit() if e[1] == "group.remove"]


async def test_block_bans_a_member_and_undo_lifts_it(world: World) -> None:
    block = world.activity("mia", "Block", world.uri("ben"), target=GROUP, removeData=False,
                           summary="trolling")
    await world.deliver("mia", block)
    assert await world.banned("ben")
    async with world.fedi.services.sessionmaker() as session:
        follows = await session.execute(
            select(Follow.id).join(Actor, Actor.id == Follow.follower_id)
            .where(Actor.uri == world.uri("ben")))
        assert follows.first() is None
    told = world.received("ben", "Block")
    assert told and told[0]["actor"] == GROUP and told[0]["target"] == GROUP
    refused = await world.post("ben")
    assert await world.row(refused) is None
    await world.deliver("mia", world.activity("mia", "Undo", block))
    assert not await world.banned("ben")
    assert [e[1] for e in await world.audit() if e[0] == world.uri("mia")] == [
        "group.ban", "group.unban"]


async def test_lock_and_undo_lock_of_a_thread(world: World) -> None:
    thread = await world.post("ann")
    lock = world.activity("mia", "Lock", thread)
    await world.deliver("mia", lock)
    root = await world.row(thread)
    assert root is not None and root.locked_at is not None
    assert await world.row(await world.post("ben", reply_to=thread)) is None
    assert any(isinstance(a["object"], dict) and a["object"]["type"] == "Lock"
               for a in world.received("zed", "Announce"))
    await world.deliver("mia", world.activity("mia", "Undo", lock))
    root = await world.row(thread)
    assert root is not None and root.locked_at is None
    assert await world.row(await world.post("ben", reply_to=thread)) is not None
    assert [e[1] for e in await world.audit() if e[0] == world.uri("mia")] == [
        "group.lock", "group.unlock"]


async def test_add_and_remove_to_featured_pin_and_unpin(world: World) -> None:
    thread = await world.post("ann")
    await world.deliver("mia", world.activity("mia", "Add", thread, target=f"{GROUP}/featured"))
    post = await world.row(thread)
    assert post is not None and post.pinned_at is not None
    featured = (await world.fedi.http.get(
        f"{GROUP}/featured", headers={"Accept": "application/activity+json"})).json()
    assert thread in json.dumps(featured)
    await world.deliver("mia", world.activity("mia", "Remove", thread,
                                              target=f"{GROUP}/featured"))
    post = await world.row(thread)
    assert post is not None and post.pinned_at is None
    assert [e[1] for e in await world.audit() if e[0] == world.uri("mia")] == [
        "group.pin", "group.unpin"]


async def test_moderators_are_added_and_removed_by_the_owner_only(world: World) -> None:
    moderators = f"{GROUP}/moderators"
    item = await world.deliver("mia", world.activity("mia", "Add", world.uri("ben"),
                                                     target=moderators))
    assert item.error is not None and item.error.startswith("refused")
    assert await world.role("ben") is None
    await world.deliver("olga", world.activity("olga", "Add", world.uri("ben"),
                                               target=moderators))
    assert await world.role("ben") == "moderator"
    assert any(a["type"] == "Add" and a["object"] == world.uri("ben")
               for a in world.received("zed", "Add"))
    await world.deliver("olga", world.activity("olga", "Remove", world.uri("ben"),
                                               target=moderators))
    assert await world.role("ben") is None
    assert [e[1] for e in await world.audit() if e[0] == world.uri("olga")] == [
        "group.add-moderator", "group.remove-moderator"]


KINDS = ["Delete", "Remove", "Block", "Undo-Block", "Lock", "Undo-Lock", "Add-featured",
         "Remove-featured", "Add-moderator"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_non_moderator_is_refused_and_nothing_changes(
    world: World, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    thread = await world.post("ann")
    async with world.fedi.services.sessionmaker() as session, session.begin():
        group = await find_local(session, "g")
        assert group is not None
        ben = (await session.execute(
            select(Actor).where(Actor.uri == world.uri("ben")))).scalar_one()
        if kind == "Undo-Block":
            await moderation.ban(session, world.fedi.services.urls, group, ben, by=None,
                                 reason=None)
        if kind == "Undo-Lock":
            await moderation.set_locked(session, world.fedi.services.urls, group, thread,
                                        locked=True)
        if kind == "Remove-featured":
            post = (await session.execute(select(Post).where(Post.uri == thread))).scalar_one()
            await moderation.set_pinned(session, group, post, pinned=True)
    before = await world.row(thread)
    assert before is not None
    audit_before = await world.audit()
    block = world.activity("zed", "Block", world.uri("ben"), target=GROUP)
    lock = world.activity("zed", "Lock", thread)
    activity = {
        "Delete": world.activity("zed", "Delete", thread),
        "Remove": world.activity("zed", "Remove", thread, target=GROUP),
        "Block": block,
        "Undo-Block": world.activity("zed", "Undo", block),
        "Lock": lock,
        "Undo-Lock": world.activity("zed", "Undo", lock),
        "Add-featured": world.activity("zed", "Add", thread, target=f"{GROUP}/featured"),
        "Remove-featured": world.activity("zed", "Remove", thread, target=f"{GROUP}/featured"),
        "Add-moderator": world.activity("zed", "Add", world.uri("zed"),
                                        target=f"{GROUP}/moderators"),
    }[kind]
    with caplog.at_level("WARNING", logger="fedi.federation.remote_moderation"):
        item = await world.deliver("zed", activity)
    assert item.error is not None and item.error.startswith("refused"), item.error
    assert world.uri("zed") in caplog.text and "refused" in caplog.text
    after = await world.row(thread)
    assert after is not None
    assert (after.deleted_at, after.locked_at, after.pinned_at, after.held) == (
        before.deleted_at, before.locked_at, before.pinned_at, before.held)
    assert await world.banned("ben") is (kind == "Undo-Block")
    assert await world.role("zed") is None
    assert await world.audit() == audit_before
