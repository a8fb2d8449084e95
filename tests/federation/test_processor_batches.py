"""The inbox processor takes a batch in one transaction (issue 13 item 8).

What the speed work must not cost: one item's failure rolls back that item alone and records
its outcome as before (retry later, failed, ignored) while the rest commit; a handler's changes
and the deliveries it enqueues commit together or not at all; a lost connection releases
every item of the batch as `new`; items run in the order of their ids. And what it gains: items
run without savepoints unless one fails after a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSessionTransaction

from fedi.activitypub.parse import IncomingActivity
from fedi.delivery.enqueue import enqueue
from fedi.errors import FetchError
from fedi.federation.processor import InboxProcessor
from fedi.handlers import Handler, HandlerContext, Ignored
from fedi.services import Services
from fedi.store.models import Actor, Delivery, Host, InboxItem, OutboundActivity

REMOTE = "https://remote.example"


async def store(services: Services, *activities: tuple[str, str]) -> list[str]:
    """(type, name) pairs stored as one queue, in this order; their activity ids. A name
    `x.n` is the n-th activity about the note `x`."""
    uris = [f"{REMOTE}/activities/{name}" for _, name in activities]
    rows = [
        {"activity_uri": uri, "actor_uri": f"{REMOTE}/users/m", "recipient": None,
         "body": json.dumps({"id": uri, "type": kind, "actor": f"{REMOTE}/users/m",
                             "object": f"{REMOTE}/notes/{name.split('.')[0]}"}),
         "state": "new", "attempts": 0, "claimed_until": 0.0, "received_at": time.time()}
        for uri, (kind, name) in zip(uris, activities, strict=True)
    ]
    async with services.sessionmaker() as session, session.begin():
        await session.execute(insert(InboxItem), rows)
    return uris


async def items(services: Services) -> dict[str, tuple[str, str | None, float]]:
    async with services.sessionmaker() as session:
        rows = await session.execute(
            select(InboxItem.activity_uri, InboxItem.state, InboxItem.error,
                   InboxItem.claimed_until))
        return {uri: (state, error, until) for uri, state, error, until in rows.all()}


async def hosts(services: Services) -> set[str]:
    async with services.sessionmaker() as session:
        return set((await session.execute(select(Host.host))).scalars())


def name_of(activity: IncomingActivity) -> str:
    return activity.id.rsplit("/", 1)[1]


async def mark(context: HandlerContext, activity: IncomingActivity) -> None:
    """A handler's own write: a row named after the activity."""
    context.session.add(Host(host=f"{name_of(activity)}.example", failures=0, down_until=0.0,
                             gone=False))
    await context.session.flush()


async def relay(context: HandlerContext, activity: IncomingActivity) -> None:
    """Like a Create: its relay to three inboxes enqueued in the item's transaction."""
    group = (await context.session.execute(select(Actor).limit(1))).scalar_one()
    announce = {"id": f"{activity.id}/relayed", "type": "Announce", "actor": group.uri,
                "object": activity.id}
    await enqueue(context.session, group, announce,
                  [f"https://m{n}.example/inbox" for n in range(3)])


async def test_one_failing_item_rolls_back_alone_and_the_batch_commits(
    services: Services,
) -> None:
    uris = await store(services, ("Like", "a"), ("Like", "retry"), ("Like", "b"),
                       ("Like", "bug"), ("Like", "ignored"), ("Like", "c"))

    async def like(context: HandlerContext, activity: IncomingActivity) -> None:
        await mark(context, activity)  # written before the failure: must be rolled back
        match name_of(activity):
            case "retry":
                raise FetchError("the origin did not answer")
            case "bug":
                raise KeyError("a bug")
            case "ignored":
                raise Ignored("not for us")

    processor = InboxProcessor(services.sessionmaker, services.resolver, services.urls,
                               {"Like": like})
    before = time.time()
    assert await processor.run_once() == 6
    found = await items(services)
    assert {uri: found[uri][:2] for uri in uris} == {
        uris[0]: ("done", None),
        uris[1]: ("new", "the origin did not answer"),
        uris[2]: ("done", None),
        uris[3]: ("failed", "internal error: KeyError: 'a bug'"),
        uris[4]: ("done", "not for us"),
        uris[5]: ("done", None),
    }
    assert found[uris[1]][2] > before + 30  # tried again later, with a pause
    assert await hosts(services) == {"a.example", "b.example", "c.example"}
    # Nothing is due now: the retry waits for its pause.
    assert await processor.run_once() == 0


async def outcomes(
    services: Services, uris: list[str], like: Handler
) -> list[tuple[str, str | None]]:
    """One batch of the stored Likes through `like`; each one's state and error, in order."""
    processor = InboxProcessor(services.sessionmaker, services.resolver, services.urls,
                               {"Like": like})
    assert await processor.run_once() == len(uris)
    found = await items(services)
    return [found[uri][:2] for uri in uris]


def statements_seen(services: Services) -> list[str]:
    """Every statement sent from now on, on any of the engine's connections."""
    seen: list[str] = []
    event.listen(services.engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: seen.append(statement))
    return seen


async def test_items_that_fail_before_writing_take_no_savepoint_and_run_once(
    services: Services,
) -> None:
    uris = await store(services, ("Like", "a"), ("Like", "ignored"), ("Like", "b"),
                       ("Like", "retry"), ("Like", "c"))
    runs: list[str] = []

    async def like(context: HandlerContext, activity: IncomingActivity) -> None:
        runs.append(name_of(activity))
        await context.session.execute(select(Actor.id).limit(1))  # reads are not writes
        match name_of(activity):
            case "ignored":
                raise Ignored("not for us")
            case "retry":  # a fetch's failure, caused by the network, not the database
                raise FetchError("the origin did not answer") from ConnectionRefusedError()
        await mark(context, activity)

    sent = statements_seen(services)
    found = await outcomes(services, uris, like)
    assert not [statement for statement in sent if "SAVEPOINT" in statement.upper()]
    assert runs == ["a", "ignored", "b", "retry", "c"]  # once each: nothing was run again
    assert found == [
        ("done", None), ("done", "not for us"), ("done", None),
        ("new", "the origin did not answer"), ("done", None)]
    assert await hosts(services) == {"a.example", "b.example", "c.example"}


async def test_a_failure_that_left_a_change_pending_is_undone(services: Services) -> None:
    """It wrote nothing, yet an ORM change waits in the session: the next item's query would
    write it."""
    uris = await store(services, ("Like", "a"), ("Like", "pending"), ("Like", "b"))

    async def like(context: HandlerContext, activity: IncomingActivity) -> None:
        if name_of(activity) == "pending":
            context.session.add(Host(host="pending.example", failures=0, down_until=0.0,
                                     gone=False))
            raise Ignored("changed its mind")
        await mark(context, activity)

    assert await outcomes(services, uris, like) == [
        ("done", None), ("done", "changed its mind"), ("done", None)]
    assert await hosts(services) == {"a.example", "b.example"}


async def test_a_failure_after_a_statement_the_database_refused_is_undone(
    services: Services,
) -> None:
    """It wrote nothing, but PostgreSQL refuses every statement after a refused one until
    the transaction (or a savepoint) rolls back: here the batch's own record of outcomes."""
    uris = await store(services, ("Like", "a"), ("Like", "b"), ("Like", "refused"))

    async def like(context: HandlerContext, activity: IncomingActivity) -> None:
        if name_of(activity) == "refused":
            try:
                await context.session.execute(text("SELECT * FROM no_such_table"))
            except SQLAlchemyError:
                raise Ignored("the lookup failed") from None
        await mark(context, activity)

    assert await outcomes(services, uris, like) == [
        ("done", None), ("done", None), ("done", "the lookup failed")]
    assert await hosts(services) == {"a.example", "b.example"}


async def test_a_create_and_its_relay_commit_together_or_not_at_all(
    services: Services,
) -> None:
    uris = await store(services, ("Create", "kept"), ("Create", "broken"), ("Create", "also"))

    async def create(context: HandlerContext, activity: IncomingActivity) -> None:
        await relay(context, activity)
        if name_of(activity) == "broken":
            raise KeyError("after the relay was enqueued")

    processor = InboxProcessor(services.sessionmaker, services.resolver, services.urls,
                               {"Create": create})
    assert await processor.run_once() == 3
    async with services.sessionmaker() as session:
        relayed = set((await session.execute(select(OutboundActivity.uri))).scalars())
        deliveries = (await session.execute(select(func.count()).select_from(Delivery)))
        assert deliveries.scalar_one() == 6
    assert relayed == {f"{uris[0]}/relayed", f"{uris[2]}/relayed"}
    assert (await items(services))[uris[1]][0] == "failed"


async def test_a_lost_connection_mid_batch_releases_every_item_as_new(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    uris = await store(services, ("Create", "first"), ("Create", "second"),
                       ("Create", "cut"), ("Create", "after"))
    reached: list[str] = []
    rollback = AsyncSessionTransaction.rollback

    async def dead_rollback(self: AsyncSessionTransaction) -> None:
        if self.nested:  # the connection is gone: even the savepoint cannot be undone
            raise OperationalError("ROLLBACK TO SAVEPOINT", {}, ConnectionResetError())
        await rollback(self)

    async def create(context: HandlerContext, activity: IncomingActivity) -> None:
        reached.append(name_of(activity))
        await relay(context, activity)
        if name_of(activity) == "cut":
            monkeypatch.setattr(AsyncSessionTransaction, "rollback", dead_rollback)
            raise OperationalError("INSERT", {}, ConnectionResetError("server closed"))

    processor = InboxProcessor(services.sessionmaker, services.resolver, services.urls,
                               {"Create": create})
    before = time.time()
    assert await processor.run_once() == 4
    monkeypatch.setattr(AsyncSessionTransaction, "rollback", rollback)
    assert reached == ["first", "second", "cut"]  # the batch stopped where it broke
    found = await items(services)
    assert {found[uri][:2] for uri in uris} == {("new", "database connection lost; retrying")}
    assert all(before < found[uri][2] < before + 10 for uri in uris)  # an early retry
    async with services.sessionmaker() as session:
        # The items that had run before the cut committed nothing either.
        assert (await session.execute(select(func.count()).select_from(Delivery))).scalar() == 0
        assert not (await session.execute(select(OutboundActivity.uri))).first()


async def test_items_run_in_the_order_of_their_ids(services: Services) -> None:
    """A Create and a Like of it in the same batch: the Like finds the Create's write."""
    uris = await store(services, ("Create", "post"), ("Like", "post.1"), ("Like", "other"))
    seen: list[str] = []

    async def create(context: HandlerContext, activity: IncomingActivity) -> None:
        seen.append(activity.id)
        await mark(context, activity)

    async def like(context: HandlerContext, activity: IncomingActivity) -> None:
        seen.append(activity.id)
        post = activity.object_id.rsplit("/", 1)[1] if activity.object_id else ""
        found = await context.session.get(Host, f"{post}.example")
        if found is None:
            raise Ignored("a like of something unknown")

    processor = InboxProcessor(services.sessionmaker, services.resolver, services.urls,
                               {"Create": create, "Like": like})
    assert await processor.run_once() == 3
    assert seen == uris
    found = await items(services)
    assert found[uris[1]][:2] == ("done", None)
    assert found[uris[2]][:2] == ("done", "a like of something unknown")


async def test_a_write_committed_by_the_inbox_meanwhile_does_not_break_the_batch(
    services: Services,
) -> None:
    """The inbox stores rows while a batch runs. On SQLite a transaction begun as a reader
    cannot write once another connection has committed after its first read ("database is
    locked" at once, whatever the busy timeout): the batch takes the write lock when it
    begins, and the inbox's store waits for it instead."""
    [uri] = await store(services, ("Like", "a"))
    started, written = asyncio.Event(), asyncio.Event()

    async def like(context: HandlerContext, activity: IncomingActivity) -> None:
        await context.session.execute(select(Actor.id).limit(1))  # the batch has read
        started.set()
        with contextlib.suppress(TimeoutError):  # SQLite: the store waits for our commit
            await asyncio.wait_for(written.wait(), timeout=0.5)
        await mark(context, activity)

    async def inbox_stores_meanwhile() -> None:
        await started.wait()
        await store(services, ("Like", "meanwhile"))
        written.set()

    processor = InboxProcessor(services.sessionmaker, services.resolver, services.urls,
                               {"Like": like})
    claimed, _ = await asyncio.gather(processor.run_once(), inbox_stores_meanwhile())
    assert claimed == 1
    found = await items(services)
    assert found[uri][:2] == ("done", None), found[uri]
    assert "a.example" in await hosts(services)
    assert f"{REMOTE}/activities/meanwhile" in found
