"""Who someone is in a group: owner, moderator, member, banned, or nobody."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.store.models import Actor, Follow, GroupBan, GroupRole


class Standing(StrEnum):
    OWNER = "owner"
    MODERATOR = "moderator"
    MEMBER = "member"
    PENDING = "pending"
    BANNED = "banned"
    NONE = "none"

    @property
    def may_post(self) -> bool:
        return self in (Standing.OWNER, Standing.MODERATOR, Standing.MEMBER)

    @property
    def moderates(self) -> bool:
        return self in (Standing.OWNER, Standing.MODERATOR)


async def standing(session: AsyncSession, group: Actor, actor: Actor) -> Standing:
    if (
        await session.execute(
            select(GroupBan.id).where(GroupBan.group_id == group.id, GroupBan.actor_id == actor.id)
        )
    ).first():
        return Standing.BANNED
    role = (
        await session.execute(
            select(GroupRole.role).where(
                GroupRole.group_id == group.id, GroupRole.actor_id == actor.id
            )
        )
    ).scalar_one_or_none()
    if role is not None:
        return Standing(role)
    follow_state = (
        await session.execute(
            select(Follow.state).where(Follow.target_id == group.id, Follow.follower_id == actor.id)
        )
    ).scalar_one_or_none()
    if follow_state == "accepted":
        return Standing.MEMBER
    if follow_state == "pending":
        return Standing.PENDING
    # People of this server join as everyone else does (groups.membership): one flow.
    return Standing.NONE


async def moderators(session: AsyncSession, group: Actor) -> list[Actor]:
    rows = await session.execute(
        select(Actor)
        .join(GroupRole, GroupRole.actor_id == Actor.id)
        .where(GroupRole.group_id == group.id)
        .order_by(GroupRole.id)
    )
    return list(rows.scalars())
