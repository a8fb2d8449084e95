"""A person of ours who moderates a group on another server (a Lemmy community, another
fedi) acts from here: the activity goes to the group's inbox in Lemmy's shapes, signed by
the person; the group checks their role, applies it and announces the result to its members
(this server among them, which then shows it).

We learn the role from the group's own Add/Remove of its moderators collection
(federation/remote_moderation.py) and keep it as a GroupRole row of the remote group, so
the reading pages know whom to offer these actions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.vocab import PUBLIC
from fedi.delivery.enqueue import enqueue
from fedi.errors import ValidationError
from fedi.store.models import Actor, GroupRole, Post
from fedi.urls import Urls, new_id

ACTIONS = ("remove", "lock", "unlock", "pin", "unpin")


async def learn_remote_role(
    session: AsyncSession, group: Actor, person: Actor, *, moderator: bool
) -> None:
    """Record (or forget) that a person of ours moderates a remote group."""
    row = (
        await session.execute(
            select(GroupRole).where(GroupRole.group_id == group.id,
                                    GroupRole.actor_id == person.id)
        )
    ).scalar_one_or_none()
    if moderator and row is None:
        session.add(GroupRole(group_id=group.id, actor_id=person.id, role="moderator"))
    elif not moderator and row is not None:
        await session.delete(row)
    await session.flush()


async def moderates_remote(session: AsyncSession, group: Actor, person: Actor) -> bool:
    if group.local or group.type != "Group":
        return False
    found = await session.execute(
        select(GroupRole.id).where(GroupRole.group_id == group.id,
                                   GroupRole.actor_id == person.id)
    )
    return found.first() is not None


async def act_on_remote_post(
    session: AsyncSession, urls: Urls, person: Actor, post: Post, action: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """Send `action` (one of ACTIONS) on a post of a remote group the person moderates;
    returns the activity queued for the group's inbox."""
    if action not in ACTIONS:
        raise ValidationError(f"unknown moderation action {action!r}")
    group = await session.get(Actor, post.group_id) if post.group_id else None
    if group is None or not await moderates_remote(session, group, person):
        raise ValidationError("you do not moderate this post's group on its server")
    if group.inbox is None:
        raise ValidationError(f"{group.uri} has no inbox")
    if post.deleted_at is not None:
        raise ValidationError("the post was already removed")
    if action in ("pin", "unpin", "lock", "unlock") and post.in_reply_to is not None:
        raise ValidationError("only a thread's first post can be pinned or locked")
    new = urls.activity
    to, cc = [PUBLIC], [group.uri]
    activity: dict[str, Any]
    if action == "remove":
        activity = activities.activity("Delete", new(new_id()), person.uri, post.uri,
                                       to=to, cc=cc)
        if reason and reason.strip():
            activity["summary"] = reason.strip()[:1000]
    elif action in ("lock", "unlock"):
        activity = activities.activity("Lock", new(new_id()), person.uri, post.uri,
                                       to=to, cc=cc)
        activity["audience"] = group.uri
        if action == "unlock":
            activity = activities.undo(new(new_id()), person.uri, activity)
            activity.update(to=to, cc=cc)
    else:
        activity = activities.activity(
            "Add" if action == "pin" else "Remove", new(new_id()), person.uri, post.uri,
            to=to, cc=cc, target=f"{group.uri}/featured",
        )
    activity["audience"] = group.uri
    await enqueue(session, person, activity, [group.inbox])
    return activity
