"""What a group relays, and to whom (FEP-1b12).

Every post, edit, deletion and reaction the group accepts goes out as the group's Announce of
the member's activity, unchanged. Microblogs, which only understand boosts, get the group's
Announce of the bare post instead, under the no-flood rule of privacy.audience.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.delivery.enqueue import enqueue
from fedi.groups.kinds import is_threaded
from fedi.groups.threads import thread_participants
from fedi.privacy.audience import Member, Recipient, relay_targets
from fedi.store.models import Actor, Follow, Host, Post, now
from fedi.urls import Urls, new_id


async def members(session: AsyncSession, group: Actor, thread_id: int | None) -> list[Member]:
    rows = await session.execute(
        select(Actor, Follow.wants_all_replies, Host.software)
        .join(Follow, Follow.follower_id == Actor.id)
        .outerjoin(Host, Host.host == Actor.domain)
        .where(Follow.target_id == group.id, Follow.state == "accepted")
    )
    participants = await thread_participants(session, thread_id) if thread_id else set()
    return [
        Member(
            Recipient(actor.uri, actor.inbox, actor.shared_inbox, actor.local),
            threaded=is_threaded(software),
            participant=actor.id in participants,
            wants_all=wants_all,
        )
        for actor, wants_all, software in rows.all()
    ]


def _addressing(group: Actor) -> tuple[list[str], list[str]]:
    return activities.public_addressing(group.uri, Urls.followers(group.uri))


async def relay_post(
    session: AsyncSession, urls: Urls, group: Actor, post: Post, activity: dict[str, Any],
    *, author_uri: str,
) -> None:
    """Announce a new post (thread starter or reply) to the members who should get it."""
    targets = relay_targets(
        await members(session, group, post.thread_id),
        is_reply=post.in_reply_to is not None,
        exclude=[author_uri],
    )
    to, cc = _addressing(group)
    published = now()
    announce = activities.announce(
        urls.activity(new_id()), group.uri, activity, to=to, cc=cc, published=published
    )
    # Stored even with no remote member: it is the group's outbox.
    await enqueue(session, group, announce, targets.activity_inboxes)
    if targets.object_inboxes:
        boost = activities.announce(
            urls.activity(new_id()), group.uri, post.uri, to=to, cc=cc, published=published
        )
        await enqueue(session, group, boost, targets.object_inboxes)
        post.boost_uri = boost["id"]


async def relay_activity(
    session: AsyncSession, urls: Urls, group: Actor, activity: dict[str, Any],
    *, author_uri: str, thread_id: int | None,
) -> None:
    """Announce an edit, deletion or reaction; only threaded servers understand these."""
    targets = relay_targets(
        await members(session, group, thread_id), is_reply=False, exclude=[author_uri]
    )
    to, cc = _addressing(group)
    announce = activities.announce(
        urls.activity(new_id()), group.uri, activity, to=to, cc=cc, published=now()
    )
    await enqueue(session, group, announce, targets.activity_inboxes)


async def withdraw_boost(
    session: AsyncSession, urls: Urls, group: Actor, post: Post, *, author_uri: str
) -> None:
    """Undo the group's boost of a deleted post, so microblogs drop it too."""
    if post.boost_uri is None:
        return
    targets = relay_targets(
        await members(session, group, post.thread_id), is_reply=False, exclude=[author_uri]
    )
    if not targets.object_inboxes:
        return
    to, cc = _addressing(group)
    boost = {"id": post.boost_uri, "type": "Announce", "actor": group.uri, "object": post.uri,
             "to": to, "cc": cc}
    undo = activities.undo(urls.activity(new_id()), group.uri, boost)
    await enqueue(session, group, undo, targets.object_inboxes)


async def announce_to_members(
    session: AsyncSession, group: Actor, activity: dict[str, Any]
) -> None:
    """The group's own activities (Add/Remove of moderators, Update of its profile)."""
    targets = relay_targets(await members(session, group, None), is_reply=False)
    await enqueue(session, group, activity, targets.activity_inboxes + targets.object_inboxes)
