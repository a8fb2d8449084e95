"""Who someone is in a group: owner, moderator, member, banned, or nobody."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.privacy.access import Viewer
from fedi.store.memo import memo_of, remembered
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


@dataclass(frozen=True)
class Roster:
    """Who is what in one group (actor id → uri, and role or follow state), in three
    queries: what an inbox batch asks of every item, read once per batch."""

    group: str
    banned: dict[int, str]
    roles: dict[int, tuple[str, str]]  # id → (uri, role)
    follows: dict[int, tuple[str, str]]  # id → (uri, follow state)

    @cached_property
    def members(self) -> frozenset[str]:
        return frozenset(uri for uri, state in self.follows.values() if state == "accepted")

    @cached_property
    def moderators(self) -> frozenset[str]:
        return frozenset(uri for uri, _ in self.roles.values())

    @cached_property
    def banned_uris(self) -> frozenset[str]:
        return frozenset(self.banned.values())

    @cached_property
    def _viewers(self) -> dict[str, Viewer]:
        return {}

    def viewer(self, uri: str) -> Viewer:
        """`uri` as the privacy gate sees them, as far as this group goes: all the gate asks
        of a viewer about a post of this group. Made once per person: a batch's relays ask
        it of every member for every post."""
        made = self._viewers.get(uri)
        if made is None:
            one = frozenset({self.group})
            made = self._viewers[uri] = Viewer(
                actor=uri,
                member_of=one if uri in self.members else frozenset(),
                moderator_of=one if uri in self.moderators else frozenset(),
                banned_from=one if uri in self.banned_uris else frozenset(),
            )
        return made

    def standing(self, actor_id: int) -> Standing:
        role = self.roles.get(actor_id)
        follow = self.follows.get(actor_id)
        return _standing_of(actor_id in self.banned, role[1] if role else None,
                            follow[1] if follow else None)


ROSTER_TABLES = frozenset({"group_bans", "group_roles", "follows", "actors"})


async def roster(session: AsyncSession, group: Actor) -> Roster:
    async def load() -> Roster:
        bans = await session.execute(
            select(Actor.id, Actor.uri).join(GroupBan, GroupBan.actor_id == Actor.id)
            .where(GroupBan.group_id == group.id))
        roles = await session.execute(
            select(Actor.id, Actor.uri, GroupRole.role)
            .join(GroupRole, GroupRole.actor_id == Actor.id).where(GroupRole.group_id == group.id))
        follows = await session.execute(
            select(Actor.id, Actor.uri, Follow.state)
            .join(Follow, Follow.follower_id == Actor.id).where(Follow.target_id == group.id))
        return Roster(
            group.uri,
            banned={actor_id: uri for actor_id, uri in bans.all()},
            roles={actor_id: (uri, role) for actor_id, uri, role in roles.all()},
            follows={actor_id: (uri, state) for actor_id, uri, state in follows.all()},
        )

    return await remembered(session, ("roster", group.id), ROSTER_TABLES, load)


def _standing_of(banned: bool, role: str | None, follow_state: str | None) -> Standing:
    if banned:
        return Standing.BANNED
    if role is not None:
        return Standing(role)
    if follow_state == "accepted":
        return Standing.MEMBER
    if follow_state == "pending":
        return Standing.PENDING
    # People of this server join as everyone else does (groups.membership): one flow.
    return Standing.NONE


async def standing(session: AsyncSession, group: Actor, actor: Actor) -> Standing:
    if memo_of(session) is not None:
        # An inbox batch: the group's whole roster, read once for all its items.
        return (await roster(session, group)).standing(actor.id)
    banned = (
        await session.execute(
            select(GroupBan.id).where(GroupBan.group_id == group.id, GroupBan.actor_id == actor.id)
        )
    ).first() is not None
    role = None if banned else (
        await session.execute(
            select(GroupRole.role).where(
                GroupRole.group_id == group.id, GroupRole.actor_id == actor.id
            )
        )
    ).scalar_one_or_none()
    follow_state = None if banned or role is not None else (
        await session.execute(
            select(Follow.state).where(Follow.target_id == group.id, Follow.follower_id == actor.id)
        )
    ).scalar_one_or_none()
    return _standing_of(banned, role, follow_state)


async def moderators(session: AsyncSession, group: Actor) -> list[Actor]:
    rows = await session.execute(
        select(Actor)
        .join(GroupRole, GroupRole.actor_id == Actor.id)
        .where(GroupRole.group_id == group.id)
        .order_by(GroupRole.id)
    )
    return list(rows.scalars())
