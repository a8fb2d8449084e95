"""Invites to invite-only groups: made by moderators, may expire or be revoked."""

from __future__ import annotations

import json
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.errors import ValidationError
from fedi.store.models import Actor, Invite, now


def invite_url(group: Actor, token: str) -> str:
    return f"{group.uri}/invite/{token}"


async def create_invite(
    session: AsyncSession, group: Actor, creator: Actor | None, *,
    expires_in: float | None = None, max_uses: int | None = None,
) -> Invite:
    if expires_in is not None and expires_in <= 0:
        raise ValidationError("an invite must expire in the future")
    if max_uses is not None and max_uses < 1:
        raise ValidationError("an invite must allow at least one use")
    invite = Invite(
        token=secrets.token_urlsafe(18), group_id=group.id,
        created_by=creator.id if creator else None,
        expires_at=now() + expires_in if expires_in else None, max_uses=max_uses,
    )
    session.add(invite)
    await session.flush()
    return invite


def usable(invite: Invite, moment: float) -> bool:
    return (
        invite.revoked_at is None
        and (invite.expires_at is None or invite.expires_at > moment)
        and (invite.max_uses is None or invite.uses < invite.max_uses)
    )


async def find_invite(session: AsyncSession, group: Actor, token: str) -> Invite | None:
    return (
        await session.execute(
            select(Invite).where(Invite.group_id == group.id, Invite.token == token)
        )
    ).scalar_one_or_none()


async def redeem(
    session: AsyncSession, group: Actor, actor: Actor, token: str | None
) -> bool:
    """Use an invite for this actor's Follow; also honour one redeemed on the web for them."""
    moment = now()
    if token is not None:
        invite = await find_invite(session, group, token)
        if invite is not None and usable(invite, moment):
            invite.uses += 1
            return True
    rows = await session.execute(
        select(Invite).where(Invite.group_id == group.id, Invite.redeemed_for.is_not(None))
    )
    for invite in rows.scalars():
        names = json.loads(invite.redeemed_for or "[]")
        if actor.uri in names and invite.revoked_at is None and (
            invite.expires_at is None or invite.expires_at > moment
        ):
            return True
    return False


async def redeem_on_web(session: AsyncSession, group: Actor, token: str, actor: Actor) -> None:
    """A person opened the invite link and named their account; their Follow will be let in."""
    invite = await find_invite(session, group, token)
    if invite is None or not usable(invite, now()):
        raise ValidationError("this invite is not valid (expired, used up or revoked)")
    names = json.loads(invite.redeemed_for or "[]")
    if actor.uri not in names:
        names.append(actor.uri)
        invite.uses += 1
    invite.redeemed_for = json.dumps(names)


async def revoke(session: AsyncSession, group: Actor, token: str) -> None:
    invite = await find_invite(session, group, token)
    if invite is None:
        raise ValidationError(f"{group.username} has no invite {token!r}")
    invite.revoked_at = now()
