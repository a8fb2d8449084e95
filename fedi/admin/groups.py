"""Local groups for admins: list, members, create, edit, delete, transfer ownership."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts import login
from fedi.activitypub import activities
from fedi.activitypub.vocab import PUBLIC
from fedi.actors.local import create_group, find_local
from fedi.admin.acting import Admin
from fedi.errors import ValidationError
from fedi.groups import group_settings
from fedi.groups.relay import announce_to_members
from fedi.moderation import audit
from fedi.store.models import (
    Actor,
    Follow,
    Group,
    GroupRole,
    InstanceSetting,
    Invite,
    Post,
    now,
)
from fedi.urls import Urls, new_id

DELETED = "deleted_group:"  # InstanceSetting key prefix: the group was deleted by an admin
MAX_TITLE = 200
MAX_SUMMARY = 5000
MAX_RULES = 50
MAX_RULE = 500


@dataclass(frozen=True)
class GroupRow:
    actor: Actor
    config: Group
    owner: Actor | None
    members: int
    deleted: bool


@dataclass(frozen=True)
class MemberRow:
    actor: Actor
    role: str  # owner | moderator | member


async def group_named(session: AsyncSession, name: str) -> Actor:
    group = await find_local(session, name.strip())
    if group is None or group.type != "Group" or await session.get(Group, group.id) is None:
        raise ValidationError(f"there is no local group {name!r}")
    return group


async def is_deleted(session: AsyncSession, group: Actor) -> bool:
    return await session.get(InstanceSetting, f"{DELETED}{group.id}") is not None


async def list_groups(session: AsyncSession) -> list[GroupRow]:
    counts = dict((await session.execute(
        select(Follow.target_id, func.count()).where(Follow.state == "accepted")
        .group_by(Follow.target_id)
    )).all())
    deleted = set((await session.execute(
        select(InstanceSetting.key).where(InstanceSetting.key.startswith(DELETED))
    )).scalars())
    rows = []
    for actor, config in (await session.execute(
        select(Actor, Group).join(Group, Group.actor_id == Actor.id).order_by(Actor.username)
    )).all():
        rows.append(GroupRow(actor, config, await session.get(Actor, config.owner_id),
                             int(counts.get(actor.id, 0)), f"{DELETED}{actor.id}" in deleted))
    return rows


async def members(session: AsyncSession, group: Actor) -> list[MemberRow]:
    """Owner and moderators first, then accepted members by name."""
    roles = dict((await session.execute(
        select(GroupRole.actor_id, GroupRole.role).where(GroupRole.group_id == group.id)
    )).all())
    people = {a.id: a for a in (await session.execute(
        select(Actor).join(Follow, Follow.follower_id == Actor.id)
        .where(Follow.target_id == group.id, Follow.state == "accepted")
    )).scalars()}
    for actor_id in roles:
        if actor_id not in people:
            found = await session.get(Actor, actor_id)
            if found is not None:
                people[actor_id] = found
    order = {"owner": 0, "moderator": 1}
    rows = [MemberRow(a, roles.get(a.id, "member")) for a in people.values()]
    return sorted(rows, key=lambda r: (order.get(r.role, 2), r.actor.username, r.actor.domain))


async def create(
    session: AsyncSession, urls: Urls, admin: Admin, name: str, *, owner: str,
    title: str | None = None, summary: str | None = None, join_policy: str | None = None,
    privacy: str = "public", rules: Sequence[str] = (),
) -> Actor:
    """As `fedi create-group`, audited under the admin."""
    group = await create_group(session, urls, name.strip(), owner=owner.strip(),
                               title=_title(title), summary=_summary(summary),
                               join_policy=join_policy or None, privacy=privacy,
                               rules=_rules(rules))
    await audit.record(session, admin.who, "group.create", group.uri, group_id=group.id,
                       details={"owner": owner.strip(), "privacy": privacy})
    return group


def _title(title: str | None) -> str | None:
    title = " ".join((title or "").split())
    if len(title) > MAX_TITLE:
        raise ValidationError(f"the title is longer than {MAX_TITLE} characters")
    return title or None


def _summary(summary: str | None) -> str | None:
    summary = (summary or "").strip()
    if len(summary) > MAX_SUMMARY:
        raise ValidationError(f"the summary is longer than {MAX_SUMMARY} characters")
    return summary or None


def _rules(rules: Sequence[str]) -> list[str]:
    kept = [r.strip() for r in rules if r.strip()]
    if len(kept) > MAX_RULES:
        raise ValidationError(f"at most {MAX_RULES} rules")
    if any(len(r) > MAX_RULE for r in kept):
        raise ValidationError(f"a rule is longer than {MAX_RULE} characters")
    return kept


async def edit(
    session: AsyncSession, urls: Urls, admin: Admin, name: str, *, title: str | None = None,
    summary: str | None = None, rules: Sequence[str] | None = None,
    join_policy: str | None = None,
) -> list[str]:
    """Change what is given (None keeps it) through the moderators' own settings use case,
    so one set of rules holds whoever edits; the names of what changed."""
    group = await group_named(session, name)
    config = await session.get(Group, group.id)
    assert config is not None
    before = (group.name, group.summary, json.loads(config.rules), config.join_policy)
    await group_settings.update(session, urls, group, group_settings.Changes(
        title=title, summary=summary, rules=list(rules) if rules is not None else None,
        join_policy=join_policy))
    after = (group.name, group.summary, json.loads(config.rules), config.join_policy)
    changed = [field for field, old, new in zip(
        ("title", "summary", "rules", "join_policy"), before, after, strict=True) if old != new]
    await audit.record(session, admin.who, "group.edit", group.uri, group_id=group.id,
                       details={"changed": changed})
    return changed


async def transfer(session: AsyncSession, admin: Admin, name: str, new_owner: str) -> Actor:
    """The new owner (a local user) takes the owner role; the old owner stays a moderator."""
    group = await group_named(session, name)
    config = await session.get(Group, group.id)
    assert config is not None
    person = await login.local_user(session, new_owner.strip())
    if person.id == config.owner_id:
        raise ValidationError(f"{person.username} already owns {group.username}")
    old = config.owner_id
    await session.execute(delete(GroupRole).where(
        GroupRole.group_id == group.id, GroupRole.actor_id.in_((old, person.id))))
    session.add(GroupRole(group_id=group.id, actor_id=person.id, role="owner"))
    session.add(GroupRole(group_id=group.id, actor_id=old, role="moderator"))
    config.owner_id = person.id
    previous = await session.get(Actor, old)
    await audit.record(session, admin.who, "group.transfer", group.uri, group_id=group.id,
                       details={"from": previous.uri if previous else None, "to": person.uri})
    return person


async def delete_group(session: AsyncSession, urls: Urls, admin: Admin, name: str,
                       reason: str | None = None) -> int:
    """Tell the members' servers the group is gone (Delete of the group), take its posts
    down, end every membership and invite, and hide it. The row stays (the audit log and
    reports point at it). How many members there were."""
    group = await group_named(session, name)
    if await is_deleted(session, group):
        raise ValidationError(f"{group.username} is already deleted")
    gone = activities.activity("Delete", urls.activity(new_id()), group.uri, group.uri,
                               to=[PUBLIC])
    await announce_to_members(session, group, gone)
    moment = now()
    await session.execute(update(Post).where(Post.group_id == group.id, Post.deleted_at.is_(None))
                          .values(deleted_at=moment, content=""))
    ended = await session.execute(delete(Follow).where(Follow.target_id == group.id))
    await session.execute(update(Invite).where(Invite.group_id == group.id,
                                               Invite.revoked_at.is_(None))
                          .values(revoked_at=moment))
    await session.execute(delete(GroupRole).where(GroupRole.group_id == group.id,
                                                  GroupRole.role != "owner"))
    config = await session.get(Group, group.id)
    assert config is not None
    config.privacy, config.join_policy = "hidden", "invite"
    group.manually_approves_followers = True
    session.add(InstanceSetting(key=f"{DELETED}{group.id}",
                                value=json.dumps({"at": moment, "who": admin.who})))
    count = int(getattr(ended, "rowcount", 0) or 0)
    await audit.record(session, admin.who, "group.delete", group.uri, reason=reason or None,
                       group_id=group.id, details={"memberships_ended": count})
    return count
