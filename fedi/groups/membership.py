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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.parse import IncomingActivity
from fedi.activitypub.vocab import first_type, id_of
from fedi.content import html_to_text
from fedi.delivery.enqueue import enqueue
from fedi.errors import ValidationError
from fedi.groups import notices
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


@dataclass(frozen=True)
class Joined:
    row: Follow  # state accepted, or pending a moderator's answer


@dataclass(frozen=True)
class JoinRefused:
    reason: str


async def request_membership(
    session: AsyncSession, group: Actor, person: Actor, *, follow_uri: str,
    invite: str | None = None, answers: str | None = None,
) -> Joined | JoinRefused:
    """The one membership flow of a local group, for people here and on other servers alike:
    refused when banned (or their server is blocked), invite-only without a valid invite;
    pending with their answers under approval; accepted otherwise."""
    if (await standing(session, group, person)) is Standing.BANNED or (
        await domain_blocked(session, group, person.domain)
    ):
        return JoinRefused("banned from the group, or its server is")
    config = await session.get(Group, group.id)
    policy = config.join_policy if config else "open"
    if policy == "invite" and not await redeem(session, group, person, invite):
        return JoinRefused("the group is invite-only and there is no valid invite")
    row = (
        await session.execute(
            select(Follow).where(Follow.follower_id == person.id, Follow.target_id == group.id)
        )
    ).scalar_one_or_none()
    asked_before = row is not None and row.state == "pending"
    if row is None:
        row = Follow(follower_id=person.id, target_id=group.id, state="pending")
        session.add(row)
    row.activity_uri = follow_uri
    row.updated_at = now()
    if policy == "approval" and row.state != "accepted":
        row.state = "pending"
        row.answers = answers
        await session.flush()
        if not asked_before:
            await notices.join_requested(session, group, person)
    else:
        row.state = "accepted"
    await session.flush()
    return Joined(row)


async def join_local_group(
    session: AsyncSession, urls: Urls, group: Actor, person: Actor, *,
    invite: str | None = None, answers: str | None = None,
) -> Follow:
    """A person of this server joins (or asks to join) a group of this server."""
    token = None
    if invite is not None:
        match = INVITE_IN_TEXT.search(invite)
        token = match.group(1) if match else invite.strip()
    result = await request_membership(
        session, group, person, follow_uri=urls.activity(new_id()), invite=token,
        answers=answers,
    )
    if isinstance(result, JoinRefused):
        raise ValidationError(f"{person.username} cannot join {group.username}: {result.reason}")
    return result.row


async def leave_local_group(session: AsyncSession, group: Actor, person: Actor) -> bool:
    """Leave (or withdraw a request to join) a group of this server; False if not in it."""
    result = await session.execute(
        delete(Follow).where(Follow.follower_id == person.id, Follow.target_id == group.id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


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
    if target.type != "Group":
        row = (
            await ctx.session.execute(
                select(Follow).where(Follow.follower_id == follower.id,
                                     Follow.target_id == target.id)
            )
        ).scalar_one_or_none()
        if row is None:
            row = Follow(follower_id=follower.id, target_id=target.id, state="accepted")
            ctx.session.add(row)
        row.state, row.activity_uri, row.updated_at = "accepted", activity.id, now()
        await notices.followed(ctx.session, follower, target)
        await respond_to_follow(ctx.session, ctx.urls, target, follower, activity.document,
                                "Accept")
        return
    await ctx.resolver.software(ctx.session, follower.domain)
    result = await request_membership(
        ctx.session, target, follower, follow_uri=activity.id,
        invite=invite_token(activity.document), answers=join_answers(activity.document),
    )
    if isinstance(result, JoinRefused):
        await respond_to_follow(ctx.session, ctx.urls, target, follower, activity.document,
                                "Reject")
        ctx.outcome = f"refused: {result.reason}"
        return
    if result.row.state == "accepted":
        await respond_to_follow(ctx.session, ctx.urls, target, follower, activity.document,
                                "Accept")


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
