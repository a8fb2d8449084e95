"""Activities about one object reach an inbox in order (a Create before its Update and its
Delete), whatever the per-host concurrency, across retries and across worker processes;
unrelated objects still go in parallel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from fedi.delivery.enqueue import object_key
from fedi.delivery.worker import DeliveryWorker
from tests.delivery.loopback import Fedi, LoopbackInbox, start_fedi
from tests.support.databases import using_postgres

NOTE = "http://fedi.test/posts/1"
DELAY = 0.3


def activity(kind: str, n: int, note: str = NOTE) -> dict[str, Any]:
    inner: Any = {"id": note, "type": "Tombstone"} if kind == "Delete" else \
        {"id": note, "type": "Note", "content": f"v{n}"}
    return {"id": f"http://fedi.test/activities/{kind.lower()}{n}", "type": kind,
            "actor": "http://fedi.test/groups/cats", "object": inner}


def relay(wrapped: dict[str, Any]) -> dict[str, Any]:
    """The group's Announce of a member's activity, as groups relay them."""
    return {"id": wrapped["id"] + "/announce", "type": "Announce",
            "actor": "http://fedi.test/groups/cats", "object": wrapped}


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[Fedi]:
    world = await start_fedi(database_url)
    yield world
    await world.services.close()


@pytest.fixture
async def inbox() -> AsyncIterator[LoopbackInbox]:
    server = LoopbackInbox(delay=DELAY)
    await server.start()
    yield server
    await server.stop()


def kinds(inbox: LoopbackInbox) -> list[str]:
    return [a.body["type"] if a.body["type"] != "Announce" else a.body["object"]["type"]
            for a in inbox.arrivals]


def test_the_order_key_is_the_object_an_activity_is_about() -> None:
    create, update, delete = (activity(k, 1) for k in ("Create", "Update", "Delete"))
    assert object_key(create) == object_key(update) == object_key(delete) == NOTE
    assert object_key(relay(create)) == object_key(relay(delete)) == NOTE
    like = {"id": "http://fedi.test/likes/1", "type": "Like", "object": NOTE}
    assert object_key(like) == "http://fedi.test/likes/1"  # Likes of one post go in parallel
    assert object_key({"id": "u", "type": "Undo", "object": like}) == like["id"]
    assert object_key({"id": "u", "type": "Undo", "object": like["id"]}) == like["id"]
    deleted = {"id": "d", "type": "Delete", "object": NOTE}
    assert object_key(deleted) == NOTE


async def test_create_update_delete_arrive_in_order_with_many_slots_per_host(
    fedi: Fedi, inbox: LoopbackInbox
) -> None:
    target = f"{inbox.base}/inbox"
    for kind in ("Create", "Update", "Delete"):
        await fedi.send(relay(activity(kind, 1)), target)
    await fedi.worker(per_host=16, per_host_start=16).run_once()
    assert kinds(inbox) == ["Create", "Update", "Delete"]
    # Each one sent only after the one before was answered, never side by side.
    first, second, third = inbox.arrivals
    assert second.at >= first.answered_at and third.at >= second.answered_at
    assert inbox.peak_in_flight == 1
    assert [state for _, state in await fedi.states()] == ["done"] * 3


async def test_unrelated_objects_still_go_in_parallel(
    fedi: Fedi, inbox: LoopbackInbox
) -> None:
    inbox.delay = 1.0  # long enough that the six overlap even on a loaded machine
    target = f"{inbox.base}/inbox"
    for n in range(6):
        await fedi.send(activity("Create", n, note=f"http://fedi.test/posts/{n}"), target)
    await fedi.worker(per_host=16, per_host_start=16).run_once()
    assert len(inbox.arrivals) == 6
    assert inbox.peak_in_flight == 6


async def test_an_update_waits_while_its_create_waits_for_a_retry(
    fedi: Fedi, inbox: LoopbackInbox
) -> None:
    inbox.delay = 0.0
    inbox.script = lambda index: (503, {}) if index == 0 else (202, {})
    target = f"{inbox.base}/inbox"
    for kind in ("Create", "Update", "Delete"):
        await fedi.send(activity(kind, 1), target)
    other = f"{inbox.base}/users/other/inbox"  # same object, another inbox: not held back
    await fedi.send(activity("Update", 2), other)
    worker = fedi.worker(per_host=16, per_host_start=16)
    await worker.run_once()
    assert kinds(inbox) == ["Create", "Update"]
    assert [a.path for a in inbox.arrivals] == ["/inbox", "/users/other/inbox"]
    assert [state for _, state in await fedi.states()] == ["pending", "pending", "pending",
                                                           "done"]
    fedi.clock.now += 13 * 3600  # past the Create's backoff
    await worker.run_once()
    assert kinds(inbox) == ["Create", "Update", "Create", "Update", "Delete"]
    assert [state for _, state in await fedi.states()] == ["done"] * 4


@pytest.mark.skipif(not using_postgres(),
                    reason="workers share a queue on PostgreSQL (SKIP LOCKED); SQLite runs one")
async def test_two_workers_keep_the_order(fedi: Fedi, inbox: LoopbackInbox) -> None:
    """Two worker instances (as two `fedi worker` processes) share the queue: the Update is
    not taken by the second while the first has the Create in flight."""
    import asyncio

    target = f"{inbox.base}/inbox"
    for kind in ("Create", "Update", "Delete"):
        await fedi.send(activity(kind, 1), target)
    one, two = (fedi.worker(per_host=16, per_host_start=16) for _ in range(2))
    await asyncio.gather(one.run_once(), two.run_once())
    while len(inbox.arrivals) < 3:  # each ran until it found nothing due; finish the rest
        if not await one.run_once() + await two.run_once():
            break
    assert kinds(inbox) == ["Create", "Update", "Delete"]
    assert inbox.peak_in_flight == 1


@pytest.mark.skipif(not using_postgres(), reason="SKIP LOCKED is a PostgreSQL feature")
async def test_workers_claiming_side_by_side_never_take_the_same_row(fedi: Fedi) -> None:
    """A row another worker claimed and committed after this claim's snapshot is passed over,
    not claimed again: else a Create could go twice, the second time after its Update."""
    import asyncio
    from collections import Counter

    for n in range(10):
        await fedi.send(activity("Create", n, note=f"http://fedi.test/posts/{n}"),
                        *(f"http://127.0.0.1:9/h{i}/inbox" for i in range(100)))
    seen: Counter[int] = Counter()

    async def claim_all(worker: DeliveryWorker) -> None:
        while True:
            rows, _ = await worker._claim(10)
            if not rows:
                return
            seen.update(row.id for row in rows)

    workers = [fedi.worker(per_host=64, per_host_start=64) for _ in range(4)]
    await asyncio.gather(*(claim_all(w) for w in workers))
    assert len(seen) == 1000
    assert [row for row, times in seen.items() if times > 1] == []
