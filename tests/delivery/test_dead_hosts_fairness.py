"""Dead hosts must not slow healthy ones (issue 13 item 9): a healthy host's new row is claimed
before the rows queued for hosts that are failing, and a host that refuses connections is
paused at once, its other rows neither signed nor sent."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, text

from fedi.activitypub.client import PostResult
from fedi.activitypub.keys import SigningKey
from fedi.delivery.retry import BREAKER_THRESHOLD, UNREACHABLE_PAUSE, breaker_pause, decide
from fedi.store.models import Delivery, Host
from tests.delivery import test_worker
from tests.delivery.test_worker import World
from tests.support.ports import port_of, reserve_port
from tests.support.remote import FakeRemote

world, remote = test_worker.world, test_worker.remote  # the same fixtures as the worker's tests

@pytest.fixture
def dead_hosts() -> Iterator[list[str]]:
    """Shared inboxes on ports that are bound but not listening: connections are refused."""
    socks: list[socket.socket] = [reserve_port() for _ in range(24)]
    yield [f"http://127.0.0.1:{port_of(s)}/inbox" for s in socks]
    for sock in socks:
        sock.close()


def record_posts(world: World) -> list[str]:
    """The inbox of every POST the worker starts, in order (signing happens inside)."""
    calls: list[str] = []
    post = world.services.client.post_activity

    async def recording(inbox_url: str, body: bytes, *, sign_as: SigningKey,
                        **kwargs: Any) -> PostResult:
        calls.append(inbox_url)
        return await post(inbox_url, body, sign_as=sign_as, **kwargs)

    world.services.client.post_activity = recording  # type: ignore[method-assign]
    return calls


async def test_a_healthy_hosts_new_row_goes_before_the_rows_of_failing_hosts(
    world: World, remote: FakeRemote, dead_hosts: list[str]
) -> None:
    # The dead hosts have failed before; their pause is over and rows wait for each of them.
    for n in range(3):
        await world.send(*dead_hosts, activity_id=f"old{n}")
    await world.worker().run_once()
    world.clock.advance(13 * 3600)  # past every pause and every row's backoff
    for n in range(3):
        await world.send(*dead_hosts, activity_id=f"new{n}")
    await world.send(remote.shared_inbox, activity_id="live")  # the newest row of all
    calls = record_posts(world)

    await world.worker(concurrency=8).run_once()

    assert len(remote.posts) == 1
    # In the first claim (8 slots), not after the dead hosts' 24 probes.
    assert remote.shared_inbox in calls[:8], calls


async def test_a_refused_connection_pauses_the_hosts_other_rows_unsigned(
    world: World, dead_hosts: list[str]
) -> None:
    dead = dead_hosts[0]
    host = dead.removeprefix("http://").removesuffix("/inbox")
    for n in range(20):
        await world.send(dead, activity_id=f"a{n}")
    calls = record_posts(world)

    await world.worker(per_host_start=8).run_once()

    # What the first claim took went out together (up to the host's starting limit); the other
    # rows were never signed or sent.
    assert 1 <= len(calls) <= 8
    async with world.services.sessionmaker() as session:
        record = await session.get(Host, host)
        rows = list((await session.execute(select(Delivery))).scalars())
    assert record is not None and record.failures == 1
    assert record.down_until > world.clock.now  # paused at once, not after 5 failures
    assert all(r.state == "pending" for r in rows)
    assert sum(r.attempts == 0 for r in rows) == 20 - len(calls)

    # Within the pause nothing goes to the host; after it, a single probe.
    world.clock.advance(UNREACHABLE_PAUSE / 2)
    before = len(calls)
    await world.worker().run_once()
    assert len(calls) == before
    world.clock.advance(13 * 3600)
    await world.worker().run_once()
    assert len(calls) == before + 1


async def test_rows_waiting_for_a_paused_host_leave_the_due_range(
    world: World, dead_hosts: list[str]
) -> None:
    """The claim walks every due row; those of paused hosts, new ones too, are moved to the
    end of the pause so that a large queue for dead hosts is not walked on every claim."""
    dead = dead_hosts[0]
    await world.send(dead, activity_id="first")
    await world.worker().run_once()  # refused: the host is paused
    for n in range(5):
        await world.send(dead, activity_id=f"later{n}")  # enqueued due at once
    await world.send(dead_hosts[1], activity_id="other")  # a host not paused (yet)

    await world.worker().run_once()

    async with world.services.sessionmaker() as session:
        paused = await session.get(Host, dead.removeprefix("http://").removesuffix("/inbox"))
        rows = list((await session.execute(
            select(Delivery).where(Delivery.inbox_url == dead))).scalars())
    assert paused is not None and paused.down_until > world.clock.now
    assert len(rows) == 6
    assert all(r.next_attempt_at >= paused.down_until for r in rows if r.attempts == 0)
    assert sum(r.attempts for r in rows) == 1  # and none of them was tried again


def test_only_an_unreachable_host_is_paused_from_its_first_failure() -> None:
    rng = random.Random(1)
    refused = decide(status=None, attempts=1, created_at=0.0, now=0.0, unreachable=True, rng=rng)
    timeout = decide(status=None, attempts=1, created_at=0.0, now=0.0, rng=rng)
    answered = decide(status=503, attempts=1, created_at=0.0, now=0.0, unreachable=True, rng=rng)
    assert refused.host_unreachable and refused.state == "pending"
    assert not timeout.host_unreachable and not answered.host_unreachable
    assert breaker_pause(1, unreachable=True) == UNREACHABLE_PAUSE
    assert breaker_pause(2, unreachable=True) == 2 * UNREACHABLE_PAUSE
    assert breaker_pause(1) == 0.0 and breaker_pause(BREAKER_THRESHOLD) > 0


async def test_a_new_row_for_a_paused_host_is_born_at_the_end_of_the_pause(
    world: World, dead_hosts: list[str], remote: FakeRemote
) -> None:
    """A relay to 1,000 dead servers adds 1,000 rows no claim can send: they are enqueued
    already deferred, so claims never walk them (issue 13 item 9)."""
    dead = dead_hosts[0]
    await world.send(dead, activity_id="first")
    await world.worker().run_once()  # refused: the host is paused
    async with world.services.sessionmaker() as session:
        paused = await session.get(Host, dead.removeprefix("http://").removesuffix("/inbox"))
    assert paused is not None and paused.down_until > 0

    await world.send(dead, remote.shared_inbox, activity_id="later")

    rows = {row.inbox_url: row for row in await world.deliveries() if row.attempts == 0}
    assert rows[dead].next_attempt_at == paused.down_until
    assert rows[remote.shared_inbox].next_attempt_at == 0.0  # a healthy host's: due at once


async def test_the_claim_is_planned_without_nested_loops_whatever_the_statistics(
    world: World, dead_hosts: list[str]
) -> None:
    """PostgreSQL: statistics taken when the queue was small made the claim a nested loop
    that ranked every due row again for each due row (11 s for a claim in bench.dead_hosts).
    The claim's own transaction, replayed, must plan it with hash joins."""
    engine = world.services.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL planner question")
    # Statistics from a small, finished queue; then 2,000 rows arrive before autovacuum runs.
    for n in range(20):
        await world.send(dead_hosts[n % len(dead_hosts)], activity_id=f"old{n}")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE deliveries SET state = 'done'"))
        await conn.execute(text("ANALYZE deliveries"))
    for n in range(100):
        await world.send(*dead_hosts[:20], activity_id=f"new{n}")

    transactions: list[list[tuple[str, Any]]] = []

    def began(_conn: Any) -> None:
        transactions.append([])

    def executed(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if transactions:
            transactions[-1].append((statement, parameters))

    event.listen(engine.sync_engine, "begin", began)
    event.listen(engine.sync_engine, "before_cursor_execute", executed)
    try:
        await world.worker().run_once()
    finally:
        event.remove(engine.sync_engine, "begin", began)
        event.remove(engine.sync_engine, "before_cursor_execute", executed)

    [claim] = [t for t in transactions if any("SKIP LOCKED" in s for s, _ in t)][:1]
    async with engine.connect() as conn, conn.begin():
        plan: list[str] = []
        for statement, parameters in claim:
            if "SKIP LOCKED" in statement:
                found = await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                plan = [line for (line,) in found.all()]
                break
            await conn.exec_driver_sql(statement, parameters)
    assert plan and not [line for line in plan if "Nested Loop" in line], "\n".join(plan)
