"""An inbox batch stores its activities for nobody (a relayed Like when no member server
takes votes) in one INSERT at its end, and none is lost or stored twice.

Every such activity was an INSERT … RETURNING of its own, one round trip per Like on
PostgreSQL (fedi.delivery.enqueue). The group's outbox must still list each one.
"""

from __future__ import annotations

import json

from sqlalchemy import select, update

from fedi.activitypub.parse import IncomingActivity
from fedi.handlers import HandlerContext
from fedi.services import Services
from fedi.store.models import Actor, Delivery, Host, OutboundActivity
from tests.federation.test_processor_memo import (
    group_with_members,
    like,
    member,
    processor,
    statements_sent,
    states,
    store,
)


async def microblogs_only(services: Services) -> None:
    """The members' servers show boosts and take no votes: a Like is relayed to nobody."""
    async with services.sessionmaker() as session, session.begin():
        await session.execute(update(Host).values(software="mastodon"))


async def deliveries(services: Services) -> int:
    async with services.sessionmaker() as session:
        return len((await session.execute(select(Delivery.id))).all())


async def announced_likes(services: Services, group_uri: str) -> list[str]:
    """The Likes the group's outbox announces, one entry per stored row."""
    async with services.sessionmaker() as session:
        bodies = (await session.execute(
            select(OutboundActivity.body).join(Actor, Actor.id == OutboundActivity.actor_id)
            .where(Actor.uri == group_uri))).scalars()
        wrapped = [json.loads(body)["object"] for body in bodies]
    return sorted(obj["id"] for obj in wrapped if isinstance(obj, dict)
                  and obj.get("type") == "Like")


async def test_a_batch_stores_its_activities_for_nobody_in_one_insert(
    services: Services,
) -> None:
    group = await group_with_members(services, 3)
    await microblogs_only(services)
    likes = [like(1, "a"), like(2, "b"), like(3, "c")]
    await store(services, *likes)
    inserts = statements_sent(services, "INSERT INTO outbound_activities")
    queued = await deliveries(services)
    assert await processor(services, {}).run_once() == 3
    assert await deliveries(services) == queued  # sent to nobody
    assert {state for state, _ in (await states(services)).values()} == {"done"}
    assert await announced_likes(services, group) == sorted(str(x["id"]) for x in likes)
    assert len(inserts) == 1, inserts


async def test_a_batch_run_again_after_a_failed_item_stores_each_once(
    services: Services,
) -> None:
    """The failed item wrote, so the batch runs again with savepoints: what the first run
    put off went with its transaction, and the second run stores each activity once."""
    group = await group_with_members(services, 3)
    await microblogs_only(services)

    async def writes_then_fails(context: HandlerContext, activity: IncomingActivity) -> None:
        context.session.add(Host(host="boom.example", failures=0, down_until=0.0, gone=False))
        await context.session.flush()
        raise KeyError("after a write")

    boom = {"id": f"{member(1)}/boom", "type": "Boom", "actor": member(1), "object": "x"}
    likes = [like(1, "a"), like(2, "b"), like(3, "c")]
    await store(services, likes[0], likes[1], boom, likes[2])
    assert await processor(services, {"Boom": writes_then_fails}).run_once() == 4
    assert (await states(services))[str(boom["id"])][0] == "failed"
    assert await announced_likes(services, group) == sorted(str(x["id"]) for x in likes)
