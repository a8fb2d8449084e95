"""Bans that end, a group's default visibility, and its banner (migration 0006)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from fedi.actors.local import create_group, create_user, find_local
from fedi.errors import ValidationError
from fedi.groups import group_settings, moderation
from fedi.groups.posting import post_to_group
from fedi.privacy.visibility import GroupPrivacy, Visibility, default_for_group
from fedi.store.models import Actor, AuditEntry, Follow, Group, GroupBan
from fedi.worker_loop import chores_loop
from tests.groups.test_group_moderation import GROUP, World
from tests.groups.test_group_moderation import world as world
from tests.support.app import InProcess, running_app


async def _banned(world: World, uri: str) -> GroupBan | None:
    async with world.fedi.services.sessionmaker() as session:
        return (await session.execute(
            select(GroupBan).join(Actor, Actor.id == GroupBan.actor_id).where(Actor.uri == uri)
        )).scalar_one_or_none()


async def test_a_ban_with_an_end_is_lifted_by_the_worker_and_the_member_is_told(
    world: World,
) -> None:
    ann = world.remote.actors["ann"].uri
    services = world.fedi.services
    async with services.sessionmaker() as session, session.begin():
        group = await find_local(session, "g")
        person = (await session.execute(select(Actor).where(Actor.uri == ann))).scalar_one()
        await moderation.ban(session, services.urls, group, person, by=None, reason="cool off",
                             expires_at=time.time() + 3600)
    row = await _banned(world, ann)
    assert row is not None and row.expires_at is not None
    # Not yet due: a sweep changes nothing.
    async with services.sessionmaker() as session, session.begin():
        assert await moderation.lift_expired_bans(session, services.urls, time.time()) == []
    assert await _banned(world, ann) is not None
    # Due: the worker's chores loop lifts it, tells ann's server and puts it on the record.
    async with services.sessionmaker() as session, session.begin():
        (await session.execute(select(GroupBan))).scalar_one().expires_at = time.time() - 1
    stop = asyncio.Event()
    task = asyncio.create_task(chores_loop(services.sessionmaker, services.urls, stop,
                                           interval=0.05))
    for _ in range(100):
        if await _banned(world, ann) is None:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert await _banned(world, ann) is None
    await services.delivery.run_once()
    undos = world.received(world.remote, "ann", "Undo")
    assert undos and undos[-1]["object"]["type"] == "Block"
    async with services.sessionmaker() as session:
        entry = (await session.execute(
            select(AuditEntry).where(AuditEntry.action == "group.unban")
        )).scalar_one()
    assert entry.who == "fedi (ban expired)" and entry.target == ann


async def test_a_ban_cannot_end_in_the_past(world: World) -> None:
    services = world.fedi.services
    async with services.sessionmaker() as session:
        group = await find_local(session, "g")
        person = (await session.execute(
            select(Actor).where(Actor.uri == world.remote.actors["ben"].uri))).scalar_one()
        with pytest.raises(ValidationError, match="future"):
            await moderation.ban(session, services.urls, group, person, by=None, reason=None,
                                 expires_at=time.time() - 10)
        still = (await session.execute(select(Follow).where(Follow.follower_id == person.id)))
        assert still.scalar_one_or_none() is not None


def test_the_default_visibility_rule_is_clamped_by_privacy() -> None:
    assert default_for_group(GroupPrivacy.PUBLIC, None) is Visibility.PUBLIC
    assert default_for_group(GroupPrivacy.PUBLIC, "members") is Visibility.MEMBERS
    assert default_for_group(GroupPrivacy.PRIVATE, "public") is Visibility.MEMBERS
    # Posts for named people are chosen per post, never a group default.
    assert default_for_group(GroupPrivacy.PUBLIC, "moderators") is Visibility.PUBLIC
    assert default_for_group(GroupPrivacy.PUBLIC, "mentioned") is Visibility.PUBLIC
    assert default_for_group(GroupPrivacy.PUBLIC, "nonsense") is Visibility.PUBLIC


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[InProcess]:
    async with running_app(database_url) as app:
        async with app.services.sessionmaker() as session, session.begin():
            await create_user(session, app.services.urls, "owner")
            await create_group(session, app.services.urls, "g", owner="owner")
        yield app


async def test_posts_take_the_groups_default_visibility_and_settings_check_it(
    fedi: InProcess,
) -> None:
    services = fedi.services
    async with services.sessionmaker() as session, session.begin():
        group = await find_local(session, "g")
        assert group is not None
        await group_settings.update(session, services.urls, group, group_settings.Changes(
            default_visibility="unlisted", banner="https://img.example/banner.png"))
    async with services.sessionmaker() as session, session.begin():
        group = await find_local(session, "g")
        owner = await find_local(session, "owner")
        assert group is not None and owner is not None
        published = await post_to_group(session, services.urls, owner, group, "hello")
        assert published.post.visibility == "unlisted"
        # The author's own choice still wins.
        chosen = await post_to_group(session, services.urls, owner, group, "hi",
                                     visibility="members")
        assert chosen.post.visibility == "members"
        # A value the group's privacy does not allow is refused and nothing changes.
        with pytest.raises(ValidationError):
            await group_settings.update(session, services.urls, group, group_settings.Changes(
                default_visibility="mentioned"))
        config = await session.get(Group, group.id)
        assert config is not None and config.default_visibility == "unlisted"
        # Making the group private drops a default it no longer allows.
        await group_settings.update(session, services.urls, group, group_settings.Changes(
            privacy="private", join_policy="approval"))
        assert config.default_visibility is None
    actor_doc = (await fedi.http.get(
        GROUP, headers={"Accept": "application/activity+json"})).json()
    assert actor_doc["image"] == {"type": "Image", "url": "https://img.example/banner.png"}


async def test_a_settings_change_reaches_the_members_servers_as_an_update(world: World) -> None:
    services = world.fedi.services
    async with services.sessionmaker() as session, session.begin():
        group = await find_local(session, "g")
        assert group is not None
        await group_settings.update(session, services.urls, group, group_settings.Changes(
            title="Renamed", rules=["be kind"], banner="https://img.example/b.png"))
    await services.delivery.run_once()
    updates = [p.json for p in world.remote.posts if p.json.get("type") == "Update"]
    assert updates, "the members' server got no Update of the group"
    body = updates[-1]["object"]
    assert body["id"] == GROUP and body["type"] == "Group" and body["name"] == "Renamed"
    assert body["image"]["url"] == "https://img.example/b.png"
    assert [rule["content"] for rule in body["rules"]] == ["be kind"]
    # A refused change sends nothing.
    before = len(world.remote.posts)
    async with services.sessionmaker() as session:
        group = await find_local(session, "g")
        assert group is not None
        with pytest.raises(ValidationError):
            await group_settings.update(session, services.urls, group, group_settings.Changes(
                privacy="private", join_policy="open"))
    await services.delivery.run_once()
    assert len(world.remote.posts) == before
