"""enqueue() makes every delivery row of an activity with one statement: one row per distinct
inbox, in the order given, each with its host in one spelling and its order key, all in the
caller's transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from fedi.delivery.enqueue import enqueue, object_key, order_key
from fedi.store.models import Delivery, OutboundActivity
from tests.delivery.loopback import Fedi, start_fedi

NOTE = "http://fedi.test/posts/1"
CREATE = {"id": "http://fedi.test/activities/1", "type": "Create",
          "actor": "http://fedi.test/groups/cats",
          "object": {"id": NOTE, "type": "Note", "content": "hi"}}


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[Fedi]:
    world = await start_fedi(database_url)
    yield world
    await world.services.close()


async def rows(fedi: Fedi) -> list[Delivery]:
    async with fedi.services.sessionmaker() as session:
        return list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())


async def test_one_row_per_distinct_inbox_in_the_order_given(fedi: Fedi) -> None:
    inboxes = [f"https://m{n}.example/inbox" for n in range(1000)]
    given = [inboxes[5], *inboxes, inboxes[0], "https://M3.Example/users/x/inbox"]
    async with fedi.services.sessionmaker() as session, session.begin():
        record = await enqueue(session, fedi.group, CREATE, given)
    found = await rows(fedi)
    assert [r.inbox_url for r in found] == list(dict.fromkeys(given))
    assert {r.activity_id for r in found} == {record}
    assert [r.host for r in found[:3]] == ["m5.example", "m0.example", "m1.example"]
    assert found[-1].host == "m3.example"  # the host's one spelling (SECURITY 22)
    assert all(r.state == "pending" and r.attempts == 0 and r.next_attempt_at == 0.0
               and r.claimed_until == 0.0 for r in found)


async def test_each_row_is_keyed_by_its_object_and_its_inbox(fedi: Fedi) -> None:
    """Same object and inbox, same key (the worker keeps their order); another inbox or
    another object, another key. An activity's keys share their first half."""
    update = {**CREATE, "id": "http://fedi.test/activities/2", "type": "Update"}
    like = {"id": "http://fedi.test/likes/1", "type": "Like", "object": NOTE}
    a, b = "https://a.example/inbox", "https://b.example/inbox"
    async with fedi.services.sessionmaker() as session, session.begin():
        await enqueue(session, fedi.group, CREATE, [a, b])
        await enqueue(session, fedi.group, update, [a])
        await enqueue(session, fedi.group, like, [a])
    create_a, create_b, update_a, like_a = (r.order_key for r in await rows(fedi))
    assert create_a == update_a == order_key(NOTE, a)
    assert create_b == order_key(NOTE, b) != create_a
    assert create_a is not None and create_b is not None
    assert create_a[:16] == create_b[:16]
    assert like_a == order_key(object_key(like), a) != create_a


async def test_nothing_is_written_when_the_transaction_rolls_back(fedi: Fedi) -> None:
    with pytest.raises(RuntimeError):
        async with fedi.services.sessionmaker() as session, session.begin():
            await enqueue(session, fedi.group, CREATE, ["https://a.example/inbox"])
            raise RuntimeError("the caller's change failed")
    assert await rows(fedi) == []
    async with fedi.services.sessionmaker() as session:
        assert (await session.scalars(select(OutboundActivity))).all() == []


async def test_no_inbox_stores_the_activity_alone(fedi: Fedi) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        record = await enqueue(session, fedi.group, CREATE, [])
    async with fedi.services.sessionmaker() as session:
        stored = await session.get(OutboundActivity, record)
    assert stored is not None and stored.uri == CREATE["id"]
    assert await rows(fedi) == []
