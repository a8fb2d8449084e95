"""The large layout (issue 11 item 6; deploy/README.md "Large layout"), on PostgreSQL: two
web processes (`fedi serve --workers 2 --no-worker`) and two `fedi worker` processes share one
database. A group with 2,000 remote members (four fake servers on loopback, 500 members each,
no shared inbox: one delivery per member) relays one post; one worker is killed with SIGKILL
mid-batch. Every member gets the post, none is lost, and a member gets it twice only if the
killed worker had it in flight (at least once, never more than the lease allows).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.security.test_delivery_faults import group_of, post, received
from tests.support.databases import using_postgres
from tests.support.instance import FediInstance, eventually
from tests.support.remote import FakeRemote

pytestmark = [
    pytest.mark.federation,
    pytest.mark.skipif(
        not using_postgres(),
        reason="needs PostgreSQL (FEDI_TEST_DATABASE_URL): the large layout is many processes "
        "on one PostgreSQL sharing the queue with SKIP LOCKED; SQLite is the one-machine, "
        "one-writer layout",
    ),
]

HOSTS = 4
PER_HOST_MEMBERS = 500
MEMBERS = HOSTS * PER_HOST_MEMBERS
# The killed worker's concurrency: what it can have in flight at once.
VICTIM_CONCURRENCY = 48
WORKER_ENV = {
    "FEDI_DELIVERY_LEASE_SECONDS": "4",  # the survivor takes the victim's rows 4 s after
    "FEDI_DELIVERY_PER_HOST": "16",
}


@pytest.fixture
async def remotes() -> AsyncIterator[list[FakeRemote]]:
    started = []
    for _ in range(HOSTS):
        remote = FakeRemote(publish_shared_inbox=False, delay=0.02)
        for n in range(PER_HOST_MEMBERS):
            remote.add_actor(f"m{n}")
        await remote.start()
        started.append(remote)
    yield started
    for remote in started:
        await remote.stop()


async def seed_members(a: FediInstance, remotes: list[FakeRemote]) -> None:
    """2,000 accepted remote members, written as the inbox's Follow handler would leave them
    (the 2,000 signed Follows themselves are the inbox tests' business, not the queue's)."""
    engine = create_async_engine(a.database_url)
    try:
        async with engine.begin() as conn:
            [(group_id,)] = (await conn.execute(text(
                "SELECT id FROM actors WHERE uri = :u"), {"u": f"{a.base_url}/groups/cats"}))
            moment = time.time()
            actors = [
                {"uri": m.uri, "username": m.name, "domain": f"127.0.0.1:{r.port}",
                 "inbox": m.inbox, "key_id": m.key_id, "pem": m.public_pem, "t": moment}
                for r in remotes for m in r.actors.values()
            ]
            await conn.execute(text(
                "INSERT INTO actors (uri, type, local, username, domain, inbox, key_id, "
                "public_key_pem, manually_approves_followers, fetched_at, key_refreshed_at, "
                "created_at) VALUES (:uri, 'Person', false, :username, :domain, :inbox, "
                ":key_id, :pem, false, :t, :t, :t)"), actors)
            await conn.execute(text(
                "INSERT INTO follows (follower_id, target_id, state, wants_all_replies, "
                "created_at, updated_at) SELECT id, :g, 'accepted', false, :t, :t "
                "FROM actors WHERE NOT local AND type = 'Person'"), {"g": group_id, "t": moment})
    finally:
        await engine.dispose()


def web_processes(a: FediInstance) -> int:
    """Children of the `fedi serve` process: the web processes uvicorn runs."""
    assert a._process is not None
    children = 0
    for task in os.listdir(f"/proc/{a._process.pid}/task"):
        with open(f"/proc/{a._process.pid}/task/{task}/children") as found:
            children += len(found.read().split())
    return children


async def test_two_web_processes_and_two_workers_deliver_2000_through_a_killed_worker(
    instances: list[FediInstance], remotes: list[FakeRemote]
) -> None:
    a = instances[0]
    group_of(a)
    await seed_members(a, remotes)
    a.start(["--workers", "2", "--no-worker"])
    assert web_processes(a) >= 2
    victim = a.spawn("worker", env={**WORKER_ENV,
                                    "FEDI_DELIVERY_CONCURRENCY": str(VICTIM_CONCURRENCY)})
    a.spawn("worker", env=WORKER_ENV)
    started = time.monotonic()
    post_id = post(a, "to all 2,000")

    def delivered() -> Counter[str]:
        counts: Counter[str] = Counter()
        for remote in remotes:
            for path, n in received(remote, post_id).items():
                counts[f"{remote.port}{path}"] += n
        return counts

    # Mid-batch: a quarter of the members have it.
    await eventually(lambda: sum(delivered().values()) >= MEMBERS // 4, timeout=60,
                     interval=0.05, what="a quarter of the fan-out delivered")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    # Only rows a worker held unfinished at the kill (leased, not recorded done) can go out
    # twice: sent, or answered and not yet recorded, by the victim. Counted before the
    # survivor takes them over (the lease is 4 s).
    [(held,)] = await a.query(
        "SELECT count(*) FROM deliveries WHERE state = 'pending' AND claimed_until > :t",
        t=time.time())
    at_kill = sum(delivered().values())
    assert at_kill < MEMBERS, "the fan-out finished before the kill; nothing was tested"

    # The web processes keep answering while the queue drains.
    async with httpx.AsyncClient() as http:
        answers = await asyncio.gather(*(
            http.get(f"{a.base_url}/groups/cats",
                     headers={"Accept": "application/activity+json"}) for _ in range(20)))
    assert {r.status_code for r in answers} == {200}

    await eventually(lambda: len(delivered()) == MEMBERS, timeout=60, interval=0.1,
                     what="every member got the post")

    async def all_done() -> list[Any]:
        found = await a.query("SELECT state, count(*) FROM deliveries GROUP BY state")
        return found if dict(found).keys() == {"done"} else []

    [(_, rows)] = await eventually(all_done, what="every delivery row done")
    took = time.monotonic() - started
    counts = delivered()
    duplicates = sum(counts.values()) - MEMBERS
    print(f"\nlarge layout: {MEMBERS} members on {HOSTS} hosts, 2 web processes, 2 workers "
          f"(one SIGKILLed after {at_kill} deliveries): delivered unique {len(counts)}, "
          f"duplicates {duplicates} (bound: {held} rows held at the kill), {took:.1f}s")
    assert rows == MEMBERS  # one row per member, every one done
    assert len(counts) == MEMBERS  # every member, none lost
    assert 0 <= duplicates <= held, counts.most_common(5)
    assert max(counts.values()) <= 2
    assert "Traceback" not in a.log()
