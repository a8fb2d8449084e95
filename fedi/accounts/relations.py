"""A local person's blocks and mutes of other accounts (person_relations).

They are the person's own filter: their timelines and notifications leave the blocked or
muted account out (`hidden_from`). Nothing is federated and no group membership changes;
a group's bans are moderation, elsewhere (fedi.groups.moderation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.errors import ValidationError
from fedi.store.models import Actor, Follow, PersonRelation, now


class Kind(StrEnum):
    BLOCK = "block"
    MUTE = "mute"
    NOTIFY = "notify"  # tell me of this account's new posts (Mastodon's follow notify=true)


@dataclass(frozen=True)
class Relations:
    """What one person has set about one other account."""

    blocking: bool = False
    muting: bool = False
    muting_notifications: bool = False
    notifying: bool = False


def _check(person: Actor, target: Actor) -> None:
    if not person.local or person.type != "Person":
        raise ValidationError("only people of this server block or mute")
    if person.id == target.id:
        raise ValidationError("you cannot block or mute yourself")


async def _row(session: AsyncSession, person: Actor, target: Actor, kind: Kind
               ) -> PersonRelation | None:
    return (await session.execute(select(PersonRelation).where(
        PersonRelation.actor_id == person.id, PersonRelation.target_id == target.id,
        PersonRelation.kind == kind.value))).scalar_one_or_none()


async def set_relation(session: AsyncSession, person: Actor, target: Actor, kind: Kind, *,
                       notifications: bool = True) -> PersonRelation:
    """Block or mute (again: a mute's notification choice is updated)."""
    _check(person, target)
    row = await _row(session, person, target, kind)
    if row is None:
        row = PersonRelation(actor_id=person.id, target_id=target.id, kind=kind.value,
                             created_at=now())
        session.add(row)
    row.mute_notifications = notifications if kind is Kind.MUTE else True
    await session.flush()
    return row


async def set_notify(session: AsyncSession, person: Actor, target: Actor, on: bool) -> None:
    """Be told (a `status` notification) of each new post of an account one follows, or
    stop; Mastodon's `notify` on follow."""
    _check(person, target)
    row = await _row(session, person, target, Kind.NOTIFY)
    if on and row is None:
        session.add(PersonRelation(actor_id=person.id, target_id=target.id,
                                   kind=Kind.NOTIFY.value, created_at=now()))
    elif not on and row is not None:
        await session.delete(row)
    await session.flush()


async def clear_relation(session: AsyncSession, person: Actor, target: Actor, kind: Kind
                         ) -> bool:
    """Unblock or unmute; False when there was nothing to lift."""
    _check(person, target)
    result = await session.execute(delete(PersonRelation).where(
        PersonRelation.actor_id == person.id, PersonRelation.target_id == target.id,
        PersonRelation.kind == kind.value))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def relations(session: AsyncSession, person: Actor, target_ids: Sequence[int]
                    ) -> dict[int, Relations]:
    """For each target id: what `person` has set (targets with nothing set are absent)."""
    if not target_ids:
        return {}
    rows = (await session.execute(select(PersonRelation).where(
        PersonRelation.actor_id == person.id,
        PersonRelation.target_id.in_(list(target_ids))))).scalars()
    found: dict[int, Relations] = {}
    for row in rows:
        current = found.get(row.target_id, Relations())
        if row.kind == Kind.BLOCK.value:
            current = replace(current, blocking=True)
        elif row.kind == Kind.MUTE.value:
            current = replace(current, muting=True, muting_notifications=row.mute_notifications)
        elif row.kind == Kind.NOTIFY.value:
            current = replace(current, notifying=True)
        found[row.target_id] = current
    return found


async def listed(session: AsyncSession, person: Actor, kind: Kind, *,
                 before: int | None = None, after: int | None = None, limit: int = 40,
                 ascending: bool = False) -> list[tuple[int, Actor]]:
    """(relation id, account) pairs, newest first unless `ascending` (for min_id paging)."""
    query = (select(PersonRelation.id, Actor)
             .join(Actor, Actor.id == PersonRelation.target_id)
             .where(PersonRelation.actor_id == person.id, PersonRelation.kind == kind.value))
    if before is not None:
        query = query.where(PersonRelation.id < before)
    if after is not None:
        query = query.where(PersonRelation.id > after)
    order = PersonRelation.id.asc() if ascending else PersonRelation.id.desc()
    rows = (await session.execute(query.order_by(order).limit(limit))).all()
    return [(int(i), a) for i, a in rows]


async def hidden_from(session: AsyncSession, person: Actor, *,
                      notifications: bool = False) -> set[int]:
    """Account ids the person's timelines (or, with notifications=True, notifications)
    leave out: everyone blocked, and everyone muted (for notifications, only the mutes
    that include them)."""
    rows = (await session.execute(select(
        PersonRelation.target_id, PersonRelation.kind, PersonRelation.mute_notifications)
        .where(PersonRelation.actor_id == person.id,
               PersonRelation.kind.in_((Kind.BLOCK.value, Kind.MUTE.value))))).all()
    return {target for target, kind, quiet in rows
            if kind == Kind.BLOCK.value or not notifications or quiet}


async def follow_local_person(session: AsyncSession, person: Actor, target: Actor) -> Follow:
    """One person here following another person here: no federation, no approval (people
    of this server do not lock their accounts)."""
    if not (target.local and target.type == "Person"):
        raise ValidationError(f"{target.uri} is not a person of this server")
    if person.id == target.id:
        raise ValidationError("you cannot follow yourself")
    row = (await session.execute(select(Follow).where(
        Follow.follower_id == person.id, Follow.target_id == target.id))).scalar_one_or_none()
    if row is None:
        row = Follow(follower_id=person.id, target_id=target.id, state="accepted")
        session.add(row)
    row.state = "accepted"
    row.updated_at = now()
    await session.flush()
    return row


async def unfollow_local_person(session: AsyncSession, person: Actor, target: Actor) -> bool:
    result = await session.execute(delete(Follow).where(
        Follow.follower_id == person.id, Follow.target_id == target.id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
