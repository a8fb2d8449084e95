"""Our local actors following remote ones, and the Accept/Reject that answer them."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.parse import IncomingActivity, host_of
from fedi.activitypub.vocab import first_type, id_of
from fedi.delivery.enqueue import enqueue
from fedi.errors import ValidationError
from fedi.groups import notices
from fedi.handlers import HandlerContext, Ignored
from fedi.store.models import Actor, Follow, now
from fedi.urls import Urls, new_id


async def follow_remote(
    session: AsyncSession, urls: Urls, follower: Actor, target: Actor,
    *, invite: str | None = None,
) -> Follow:
    """Record a pending follow and queue the Follow activity in the same transaction."""
    if target.local:
        raise ValidationError(f"{target.uri} is local; local follows need no federation")
    existing = (
        await session.execute(
            select(Follow).where(Follow.follower_id == follower.id, Follow.target_id == target.id)
        )
    ).scalar_one_or_none()
    if existing is not None and existing.state in ("pending", "accepted"):
        return existing
    activity = activities.follow(urls.activity(new_id()), follower.uri, target.uri)
    if invite:
        # Invite-only groups look for the invite link here (fedi.groups.membership).
        activity["instrument"] = invite
    if existing is None:
        existing = Follow(follower_id=follower.id, target_id=target.id, state="pending")
        session.add(existing)
    existing.state = "pending"
    existing.activity_uri = activity["id"]
    existing.updated_at = now()
    if target.inbox is None:
        raise ValidationError(f"{target.uri} has no inbox")
    await enqueue(session, follower, activity, [target.inbox])
    return existing


async def unfollow_remote(
    session: AsyncSession, urls: Urls, follower: Actor, target: Actor
) -> bool:
    """Forget the follow and queue Undo(Follow); False when there was nothing to undo."""
    existing = (
        await session.execute(
            select(Follow).where(Follow.follower_id == follower.id, Follow.target_id == target.id)
        )
    ).scalar_one_or_none()
    if existing is None:
        return False
    original = activities.follow(
        existing.activity_uri or urls.activity(new_id()), follower.uri, target.uri
    )
    await session.delete(existing)
    if target.inbox:
        undo = activities.undo(urls.activity(new_id()), follower.uri, original)
        await enqueue(session, follower, undo, [target.inbox])
    return True


async def handle_follow_response(ctx: HandlerContext, activity: IncomingActivity) -> None:
    """Accept or Reject of one of our Follows: only the followed actor may answer it.

    A group also answers a post it refuses with a Reject of the Create: that says nothing of
    the membership, which stays as it is (the group still lists the member)."""
    kind = first_type(activity.object) if activity.object is not None else None
    if kind not in (None, "Follow"):
        raise Ignored(f"{activity.type} of a {kind}: the membership is unchanged")
    follow_uri = activity.object_id
    row = None
    if follow_uri is not None:
        row = (
            await ctx.session.execute(select(Follow).where(Follow.activity_uri == follow_uri))
        ).scalar_one_or_none()
    if row is None and activity.object is not None:
        # Some servers answer with a fresh copy whose id is missing; match by the pair.
        follower_uri = id_of(activity.object.get("actor"))
        if follower_uri is not None:
            row = await _follow_by_pair(ctx.session, follower_uri, activity.actor)
    if row is None:
        raise Ignored(f"{activity.type} of a follow we do not know")
    target = await ctx.session.get(Actor, row.target_id)
    if target is None or target.uri != activity.actor:
        raise Ignored(f"{activity.actor} may not answer a follow of someone else")
    await notices.follow_answered(ctx.session, row, target, accepted=activity.type == "Accept")
    row.state = "accepted" if activity.type == "Accept" else "rejected"
    row.updated_at = now()


async def _follow_by_pair(session: AsyncSession, follower: str, target: str) -> Follow | None:
    follower_actor = (
        await session.execute(select(Actor).where(Actor.uri == follower))
    ).scalar_one_or_none()
    target_actor = (
        await session.execute(select(Actor).where(Actor.uri == target))
    ).scalar_one_or_none()
    if follower_actor is None or target_actor is None:
        return None
    return (
        await session.execute(
            select(Follow).where(
                Follow.follower_id == follower_actor.id, Follow.target_id == target_actor.id
            )
        )
    ).scalar_one_or_none()


async def handle_banned_from_remote_group(ctx: HandlerContext,
                                          activity: IncomingActivity) -> None:
    """A Block of one of our people with another server's group as `target` (how fedi and
    Lemmy federate a ban): their membership ends here too, so they no longer post to a group
    that refuses them. Only the group's own server speaks for it (the group, or on Lemmy
    the moderator's account there)."""
    target = id_of(activity.document.get("target"))
    host = host_of(activity.actor)
    if target is None or activity.object_id is None or not host or host_of(target) != host:
        raise Ignored("Block of one of ours not sent by the server of the group it names")
    group = (await ctx.session.execute(
        select(Actor).where(Actor.uri == target, Actor.type == "Group"))).scalar_one_or_none()
    person = (await ctx.session.execute(
        select(Actor).where(Actor.uri == activity.object_id, Actor.local))).scalar_one_or_none()
    if group is None or group.local or person is None:
        raise Ignored("Block of someone not ours, or from a group we do not know")
    await ctx.session.execute(
        delete(Follow).where(Follow.follower_id == person.id, Follow.target_id == group.id))
    ctx.outcome = f"{person.uri} banned from {group.uri}: membership ended"
