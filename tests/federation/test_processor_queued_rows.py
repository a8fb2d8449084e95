"""What an inbox batch writes for each new post, and when (issue 13 item 8):

- the delivery rows of every relay in the batch (and on PostgreSQL the outbound activities
  they belong to) go in at its end in one write, in the order they were queued, and code
  that reads queued rows inside the batch (a ban) finds them
  (fedi.delivery.enqueue.queued_written);
- on PostgreSQL a new post's id is taken ahead (fedi.store.reserved_ids), so the post goes in
  with one INSERT, its thread, context and boost with it, and no UPDATE follows;
- each item leaves nothing unwritten in the session, so a later item's refusal does not look
  like a write and send the batch round again with savepoints.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import IncomingActivity
from fedi.delivery import enqueue as enqueue_module
from fedi.groups.ban_deliveries import drop_queued_for
from fedi.handlers import HandlerContext
from fedi.services import Services
from fedi.store.memo import batch_memo
from fedi.store.models import Actor, Delivery, Group, OutboundActivity, Post
from fedi.store.reserved_ids import MOST_AT_ONCE, next_id
from tests.federation.test_processor_memo import (
    group_with_members,
    member,
    processor,
    statements_sent,
    states,
    store,
)
from tests.federation.test_processor_new_posts import new_thread
from tests.federation.test_processor_outbox_rows import microblogs_only


def postgres(services: Services) -> bool:
    return services.engine.dialect.name == "postgresql"


async def queued(services: Services) -> list[tuple[int, int, str, str]]:
    """(delivery id, activity id, inbox, state) of every row, by id."""
    async with services.sessionmaker() as session:
        rows = await session.execute(
            select(Delivery.id, Delivery.activity_id, Delivery.inbox_url, Delivery.state)
            .order_by(Delivery.id))
        return [tuple(row) for row in rows.all()]  # type: ignore[misc]


@pytest.mark.parametrize("held_at", [None, 3])
async def test_a_batch_queues_every_relay_in_one_write_in_the_order_queued(
    services: Services, monkeypatch: pytest.MonkeyPatch, held_at: int | None,
) -> None:
    group = await group_with_members(services, 3)
    before = await queued(services)
    threads = [new_thread(group, n, name) for n, name in ((1, "a"), (2, "b"), (0, "c"), (1, "d"))]
    await store(services, *threads)
    # One executemany on SQLite, one COPY on PostgreSQL (which statement hooks do not see).
    writes: list[int] = []
    write_rows = enqueue_module._write_rows

    async def counted(session: AsyncSession, rows: list[enqueue_module.Row]) -> None:
        writes.append(len(rows))
        await write_rows(session, rows)

    monkeypatch.setattr(enqueue_module, "_write_rows", counted)
    if held_at is not None:
        monkeypatch.setattr(enqueue_module, "MOST_ROWS_HELD", held_at)
    assert await processor(services, {}).run_once() == 4
    assert {state for state, _ in (await states(services)).values()} == {"done"}
    rows = (await queued(services))[len(before):]
    # All at once; or, past the most a batch holds, whenever that many wait.
    assert writes == ([len(rows)] if held_at is None else [4, 4])
    # Each relay reaches the other members' servers, and the rows follow the relays' order:
    # an activity's rows together, activities in the order they were stored.
    activities = [activity for _, activity, _, _ in rows]
    assert activities == sorted(activities)
    assert len(set(activities)) == 4
    assert len(rows) == 4 * 2  # three members: each post to the two others
    async with services.sessionmaker() as session:
        bodies = dict((await session.execute(
            select(OutboundActivity.id, OutboundActivity.body)
            .where(OutboundActivity.id.in_(activities)))).all())
    order = [next(n for n, thread in enumerate(threads)
                  if str(thread["object"]["id"]) in bodies[activity])  # type: ignore[index]
             for activity in dict.fromkeys(activities)]
    assert order == [0, 1, 2, 3]


async def test_a_ban_later_in_the_batch_drops_what_earlier_items_queued(
    services: Services,
) -> None:
    """The relays of the batch's first items wait for its end; the ban in between must still
    find and drop what they queued for the banned member."""
    group = await group_with_members(services, 3)
    dropped: list[int] = []

    async def ban(context: HandlerContext, activity: IncomingActivity) -> None:
        session = context.session
        found = (await session.execute(select(Actor).where(Actor.uri == group))).scalar_one()
        banned = (await session.execute(
            select(Actor).where(Actor.uri == member(2)))).scalar_one()
        dropped.append(await drop_queued_for(session, found, banned))

    ban_item = {"id": f"{member(0)}/ban", "type": "BanForTest", "actor": member(0),
                "object": member(2)}
    await store(services, new_thread(group, 1, "one"), new_thread(group, 0, "two"), ban_item)
    assert await processor(services, {"BanForTest": ban}).run_once() == 3
    assert {state for state, _ in (await states(services)).values()} == {"done"}
    assert dropped == [3]  # the group's first thread (queued before the batch), the batch's two
    to_banned = {state for _, _, inbox, state in await queued(services)
                 if inbox == "https://m2.example/inbox"}
    assert to_banned == {"dropped"}


async def test_a_new_thread_goes_in_once_with_its_thread_context_and_boost(
    services: Services,
) -> None:
    group = await group_with_members(services, 3)
    await microblogs_only(services)  # they show boosts: the relay sets the post's boost
    names = ["one", "two", "three"]
    await store(services, *(new_thread(group, n, name) for n, name in enumerate(names)))
    updates = statements_sent(services, "UPDATE posts")
    inserts = statements_sent(services, "INSERT INTO posts")
    assert await processor(services, {}).run_once() == 3
    async with services.sessionmaker() as session:
        posts = (await session.execute(
            select(Post).where(Post.name.in_(names)).order_by(Post.id))).scalars().all()
    assert [p.name for p in posts] == names
    for post in posts:
        assert post.thread_id == post.id
        assert post.context == f"{services.urls.base}/contexts/{post.id}"
        assert post.boost_uri is not None
    assert len(inserts) == 3
    if postgres(services):
        # The first item's reads fill the batch's memo, and a query flushes its post before
        # the relay sets the boost (one UPDATE of a column no index holds); the others read
        # from the memo and go in once. SQLite gives ids at the INSERT: its UPDATEs stay.
        assert len(updates) <= 1, updates


async def test_a_refusal_after_a_new_post_does_not_send_the_batch_round_again(
    services: Services,
) -> None:
    """The post's INSERT waits for the session's next flush (a relay's statements make one);
    a post held for a moderator is not relayed, and the item that stored it flushes before it
    ends, so the next item's refusal finds nothing unwritten and is undone alone."""
    group = await group_with_members(services, 3)
    async with services.sessionmaker() as session, session.begin():
        await session.execute(update(Group).values(premoderation=True))
    unknown = {"id": f"{member(2)}/likes/nothing", "type": "Like", "actor": member(2),
               "object": f"{member(2)}/notes/none-such"}
    # The second post is the one left waiting: the first item's reads (filling the memo)
    # flush its post on their own.
    await store(services, new_thread(group, 1, "one"), new_thread(group, 2, "two"), unknown,
                new_thread(group, 0, "three"))
    savepoints = statements_sent(services, "SAVEPOINT")
    assert await processor(services, {}).run_once() == 4
    found = await states(services)
    assert found[str(unknown["id"])][0] == "done" and found[str(unknown["id"])][1]
    assert {found[str(t)][1] for t in (f"{member(n)}/notes/{name}/create" for n, name in
                                        ((1, "one"), (2, "two"), (0, "three")))} == \
        {"held for a moderator (premoderation)"}
    assert savepoints == []
    async with services.sessionmaker() as session:
        names = (await session.execute(
            select(Post.name).where(Post.name.in_(["one", "two", "three"])))).scalars().all()
    assert sorted(names) == ["one", "three", "two"]


async def test_ids_are_taken_ahead_only_in_a_batch_on_postgres_a_few_at_a_time(
    services: Services,
) -> None:
    async with services.sessionmaker() as session, session.begin():
        assert await next_id(session, "posts") is None  # no batch
    taking = statements_sent(services, "SELECT nextval")
    async with services.sessionmaker() as session, session.begin():
        async with batch_memo(session) as memo:
            memo.defers_writes = True
            ids = [await next_id(session, "posts") for _ in range(2 * MOST_AT_ONCE)]
    if not postgres(services):
        assert ids == [None] * len(ids)
        assert taking == []
        return
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # 1, 2, 4 … 64 at a time: what a batch takes is at most about twice what it uses.
    assert len(taking) == 8  # 1+2+4+8+16+32+64 = 127, then 64 more
