"""Joining and leaving groups (Follow / Undo Follow), under each group's join policy.

- open: a Follow is accepted at once.
- approval: the request waits, with the answers to the group's questions, for a moderator.
- invite: only a Follow carrying a valid invite (as `instrument`, or the invite link in its
  content), or from an account an invite was redeemed for on the web, is accepted.
Banned actors are refused whatever the policy.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.parse import IncomingActivity
from fedi.activitypub.vocab import first_type, id_of
from fedi.content import html_to_text
from fedi.delivery.enqueue import enqueue
from fedi.groups.inbound import undo_reaction
from fedi.groups.invites import redeem
from fedi.groups.restrictions import domain_blocked
from fedi.groups.roles import Standing, standing
from fedi.handlers import HandlerContext, Ignored
from fedi.store.models import Actor, Follow, Group, now
from fedi.urls import Urls, new_id

INVITE_IN_TEXT = re.compile(r"/invite/([A-Za-z0-9_-]{8,64})")


def invite_token(follow: dict[str, Any]) -> str | None:
    """The invite a Follow carries, if any."""
    for value in (id_of(follow.get("instrument")), follow.get("content"), follow.get("summary")):
        if isinstance(value, str) and (match := INVITE_IN_TEXT.search(value)):
            return match.group(1)
    return None


def join_answers(follow: dict[str, Any]) -> str | None:
    for key in ("content", "summary"):
        value = follow.get(key)
        if isinstance(value, str) and value.strip():
            return html_to_text(value)[:4000]
    return None


async def respond_to_follow(
    session: AsyncSession, urls: Urls, target: Actor, follower: Actor, follow: dict[str, Any],
    kind: str,
) -> None:
    """Send Accept or Reject of a Follow to the follower."""
    if follower.local or not follower.inbox:
        return
    answer = activities.respond(kind, urls.activity(new_id()), target.uri, follow, follower.uri)
    await enqueue(session, target, answer, [follower.inbox])


def follow_document(row: Follow, follower: Actor, target: Actor) -> dict[str, Any]:
    """The Follow being answered, rebuilt from what we stored (for later Accept/Reject)."""
    return {"id": row.activity_uri, "type": "Follow", "actor": follower.uri, "object": target.uri}


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
    if target.type == "Group":
        await ctx.resolver.software(ctx.session, follower.domain)
    policy = "open"
    if target.type == "Group":
        refused = (await standing(ctx.session, target, follower)) is Standing.BANNED or (
            await domain_blocked(ctx.session, target, follower.domain)
        )
        if refused:
            await respond_to_follow(ctx.session, ctx.urls, target, follower, activity.document,
                                    "Reject")
            ctx.outcome = "refused: banned from the group, or its server is"
            return
        group = await ctx.session.get(Group, target.id)
        policy = group.join_policy if group else "open"
    if policy == "invite" and not await redeem(
        ctx.session, target, follower, invite_token(activity.document)
    ):
        await respond_to_follow(ctx.session, ctx.urls, target, follower, activity.document,
                                "Reject")
        ctx.outcome = "refused: the group is invite-only and the Follow has no valid invite"
        return
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
    if policy == "approval" and row.state != "accepted":
        row.state = "pending"
        row.answers = join_answers(activity.document)
        return
    row.state = "accepted"
    await respond_to_follow(ctx.session, ctx.urls, target, follower, activity.document, "Accept")


async def handle_undo(ctx: HandlerContext, activity: IncomingActivity) -> None:
    undone = activity.object
    kind = first_type(undone) if undone else None
    if kind in ("Like", "Dislike", "EmojiReact"):
        return await undo_reaction(ctx, activity)
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
        # Perhaps an Undo of a reaction that names only its id.
        if activity.object_id is not None:
            return await undo_reaction(ctx, activity)
        raise Ignored("Undo of a follow we do not have")


def parse_questions(raw: str) -> list[str]:
    loaded = json.loads(raw or "[]")
    return [q for q in loaded if isinstance(q, str)] if isinstance(loaded, list) else []
