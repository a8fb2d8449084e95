"""Circles: named lists of people kept by a user or by a group's moderators."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.errors import ValidationError
from fedi.store.models import Actor, Circle, CircleMember


async def find_circle(session: AsyncSession, owner: Actor, name: str) -> Circle | None:
    query = select(Circle).where(Circle.owner_id == owner.id, Circle.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def create_circle(session: AsyncSession, owner: Actor, name: str) -> Circle:
    if not name.strip() or len(name) > 64:
        raise ValidationError("a circle name is 1–64 characters")
    if await find_circle(session, owner, name) is not None:
        raise ValidationError(f"{owner.username} already has a circle {name!r}")
    circle = Circle(owner_id=owner.id, name=name)
    session.add(circle)
    await session.flush()
    return circle


async def set_membership(
    session: AsyncSession, circle: Circle, actor: Actor, *, member: bool
) -> None:
    if member:
        exists = await session.execute(
            select(CircleMember.id).where(
                CircleMember.circle_id == circle.id, CircleMember.actor_id == actor.id
            )
        )
        if exists.first() is None:
            session.add(CircleMember(circle_id=circle.id, actor_id=actor.id))
    else:
        await session.execute(
            delete(CircleMember).where(
                CircleMember.circle_id == circle.id, CircleMember.actor_id == actor.id
            )
        )


async def circle_people(session: AsyncSession, circle: Circle) -> list[Actor]:
    rows = await session.execute(
        select(Actor).join(CircleMember, CircleMember.actor_id == Actor.id)
        .where(CircleMember.circle_id == circle.id)
    )
    return list(rows.scalars())


async def resolve_circle(
    session: AsyncSession, name: str, *, author: Actor, group: Actor
) -> Circle:
    """The author's circle of that name, else the group's (kept by its moderators)."""
    circle = await find_circle(session, author, name) or await find_circle(session, group, name)
    if circle is None:
        raise ValidationError(
            f"neither {author.username} nor {group.username} has a circle {name!r}; "
            "make one with fedi circle create"
        )
    return circle
