"""A banned member receives nothing more from the group: what is still queued for them is
dropped. Their personal inbox always; their server's shared inbox only when no other member
of the group uses it (those members still get what was queued for them there)."""

from __future__ import annotations

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.delivery.enqueue import queued_written
from fedi.store.models import Actor, Delivery, Follow, OutboundActivity, now


async def drop_queued_for(session: AsyncSession, group: Actor, member: Actor) -> int:
    """Drop the group's pending deliveries that reach only `member`; how many were dropped."""
    if member.local:
        return 0
    inboxes = {member.inbox} - {None}
    shared = member.shared_inbox
    if shared and shared not in inboxes:
        others = await session.execute(
            select(Actor.id).join(Follow, Follow.follower_id == Actor.id)
            .where(Follow.target_id == group.id, Follow.state == "accepted",
                   Actor.id != member.id,
                   or_(Actor.shared_inbox == shared, Actor.inbox == shared))
            .limit(1)
        )
        if others.first() is None:
            inboxes.add(shared)
    if not inboxes:
        return 0
    moment = now()
    await queued_written(session)  # in an inbox batch, what earlier items queued is dropped too
    result = await session.execute(
        update(Delivery)
        .where(Delivery.state == "pending", Delivery.inbox_url.in_(sorted(inboxes)),
               Delivery.activity_id.in_(
                   select(OutboundActivity.id).where(OutboundActivity.actor_id == group.id)))
        .values(state="dropped", last_error=f"refused: {member.uri} is banned from the group",
                done_at=moment, claimed_until=0.0)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
