"""Follow / Undo(Follow) of local actors: for a group, joining and leaving it."""

from __future__ import annotations

from sqlalchemy import delete, select

from fedi.activitypub import activities
from fedi.activitypub.parse import IncomingActivity
from fedi.activitypub.vocab import first_type, id_of
from fedi.delivery.enqueue import enqueue
from fedi.handlers import HandlerContext, Ignored
from fedi.store.models import Actor, Follow, Group, now
from fedi.urls import new_id


async def handle_follow(ctx: HandlerContext, activity: IncomingActivity) -> None:
    target_uri = activity.object_id
    if target_uri is None or not ctx.urls.is_local(target_uri):
        raise Ignored("Follow of an actor that is not ours")
    target = (
        await ctx.session.execute(select(Actor).where(Actor.uri == target_uri, Actor.local))
    ).scalar_one_or_none()
    if target is None or target.type == "Application":
        raise Ignored(f"Follow of unknown actor {target_uri}")
    follower = await ctx.resolver.actor(ctx.session, activity.actor)
    policy = "open"
    if target.type == "Group":
        group = await ctx.session.get(Group, target.id)
        policy = group.join_policy if group else "open"
    row = (
        await ctx.session.execute(
            select(Follow).where(Follow.follower_id == follower.id, Follow.target_id == target.id)
        )
    ).scalar_one_or_none()
    if row is None:
        row = Follow(follower_id=follower.id, target_id=target.id, state="pending")
        ctx.session.add(row)
    row.activity_uri = activity.id
    row.updated_at = now()
    if policy == "open":
        row.state = "accepted"
        accept = activities.respond(
            "Accept", ctx.urls.activity(new_id()), target.uri, activity.document, follower.uri
        )
        if follower.inbox:
            await enqueue(ctx.session, target, accept, [follower.inbox])
    else:
        # Approval and invite groups hold the request until a moderator decides.
        row.state = "pending"


async def handle_undo(ctx: HandlerContext, activity: IncomingActivity) -> None:
    undone = activity.object
    kind = first_type(undone) if undone else None
    if kind not in (None, "Follow"):
        raise Ignored(f"Undo of {kind} is not handled")
    follower = (
        await ctx.session.execute(select(Actor).where(Actor.uri == activity.actor))
    ).scalar_one_or_none()
    if follower is None:
        raise Ignored("Undo from an actor we do not know")
    conditions = [Follow.follower_id == follower.id]
    target_uri = id_of(undone.get("object")) if undone else None
    if target_uri is not None:
        target = (
            await ctx.session.execute(select(Actor).where(Actor.uri == target_uri))
        ).scalar_one_or_none()
        if target is None:
            raise Ignored("Undo of a follow of an unknown actor")
        conditions.append(Follow.target_id == target.id)
    elif activity.object_id is not None:
        conditions.append(Follow.activity_uri == activity.object_id)
    else:
        raise Ignored("Undo without an object")
    result = await ctx.session.execute(delete(Follow).where(*conditions))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise Ignored("Undo of a follow we do not have")
