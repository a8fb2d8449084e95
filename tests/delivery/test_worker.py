"""The delivery worker against real HTTP inboxes on loopback (SECURITY 15–16)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from fedi.activitypub import client as fedi_client
from fedi.activitypub.client import as_url
from fedi.activitypub.httpsig import parse_signature, verify_request
from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.delivery.enqueue import enqueue
from fedi.delivery.worker import DeliveryWorker
from fedi.services import Services, build_services
from fedi.store.migrate import migrate
from fedi.store.models import Actor, Delivery, Host
from tests.support.databases import using_postgres
from tests.support.ports import port_of, reserve_port
from tests.support.remote import FakeRemote


class Clock:
    def __init__(self) -> None:
        # A little ahead of the wall clock, so rows enqueued "now" are due.
        self.now = time.time() + 5

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    services: Services
    group: Actor
    clock: Clock

    def worker(self, **kwargs: object) -> DeliveryWorker:
        return DeliveryWorker(
            self.services.sessionmaker, self.services.client, clock=self.clock, **kwargs  # type: ignore[arg-type]
        )

    async def send(self, *inboxes: str, activity_id: str = "1") -> None:
        activity = {"id": f"http://fedi.test/activities/{activity_id}", "type": "Announce",
                    "actor": self.group.uri, "object": "http://fedi.test/posts/1"}
        async with self.services.sessionmaker() as session, session.begin():
            await enqueue(session, self.group, activity, inboxes)

    async def deliveries(self) -> list[Delivery]:
        async with self.services.sessionmaker() as session:
            return list((await session.execute(select(Delivery).order_by(Delivery.id))).scalars())


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    settings = Settings(base_url="http://fedi.test", database_url=database_url,
                        allow_private_addresses=True)
    services = build_services(settings)
    await migrate(services.engine)
    await services.start()
    async with services.sessionmaker() as session, session.begin():
        await create_user(session, services.urls, "owner")
        group = await create_group(session, services.urls, "cats", owner="owner")
    yield World(services, group, Clock())
    await services.close()


@pytest.fixture
async def remote() -> AsyncIterator[FakeRemote]:
    server = FakeRemote()
    await server.start()
    yield server
    await server.stop()


async def test_delivery_is_signed_and_done(world: World, remote: FakeRemote) -> None:
    await world.send(remote.shared_inbox)
    assert await world.worker().run_once() == 1
    [delivery] = await world.deliveries()
    assert (delivery.state, delivery.last_status, delivery.attempts) == ("done", 202, 1)

    request = remote.posts[0]
    headers = {k.lower(): v for k, v in request.headers.items()}
    signature = parse_signature(headers)
    assert signature.key_id == f"{world.group.uri}#main-key"
    # Verifies with the group's published key: raises if not.
    verify_request(signature, "POST", remote.shared_inbox, headers, request.body,
                   world.group.public_key_pem or "")
    assert request.json["actor"] == world.group.uri


async def test_a_wave_is_signed_back_to_back_each_request_once(
    world: World, remote: FakeRemote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first row of a wave to be sent signs the whole wave in one run (its RSA code stays
    in the CPU's caches), before the other rows are even checked; none is signed twice."""
    events: list[str] = []
    real_sign = fedi_client.sign_request

    def signing(*args: Any, **kwargs: Any) -> dict[str, str]:
        events.append("sign")
        return real_sign(*args, **kwargs)

    async def policy(host: str) -> str | None:
        events.append("check")
        return None

    monkeypatch.setattr(fedi_client, "sign_request", signing)
    inboxes = [f"{remote.base_url}/users/u{n}/inbox" for n in range(5)]
    await world.send(*inboxes)

    assert await world.worker(host_policy=policy).run_once() == 5

    assert events == ["check", *["sign"] * 5, *["check"] * 4]
    assert sorted(p.path for p in remote.posts) == sorted(as_url(i).path for i in inboxes)
    for request in remote.posts:
        headers = {k.lower(): v for k, v in request.headers.items()}
        verify_request(parse_signature(headers), "POST", f"{remote.base_url}{request.path}",
                       headers, request.body, world.group.public_key_pem or "")


async def test_client_errors_are_final_but_401_408_429_are_retried(
    world: World, remote: FakeRemote
) -> None:
    for status in (400, 403, 404, 401, 408, 429):
        remote.statuses = [status]
        remote.posts.clear()
        await world.send(remote.shared_inbox, activity_id=str(status))
        await world.worker().run_once()
        delivery = (await world.deliveries())[-1]
        if status in (401, 408, 429):
            assert delivery.state == "pending", status
            assert delivery.next_attempt_at > world.clock.now, status
        else:
            assert delivery.state == "failed", status
        assert delivery.last_status == status


async def test_retry_after_is_honoured(world: World, remote: FakeRemote) -> None:
    remote.statuses = [429]
    remote.response_headers = {"Retry-After": "7200"}
    await world.send(remote.shared_inbox)
    await world.worker().run_once()
    [delivery] = await world.deliveries()
    assert delivery.next_attempt_at >= world.clock.now + 7200

    # Not claimed before then; delivered after.
    remote.statuses, remote.response_headers = [202], {}
    world.clock.advance(3600)
    assert await world.worker().run_once() == 0
    world.clock.advance(3601)
    assert await world.worker().run_once() == 1
    assert (await world.deliveries())[0].state == "done"


async def test_server_errors_back_off_exponentially_then_give_up(
    world: World, remote: FakeRemote
) -> None:
    remote.statuses = [503]
    await world.send(remote.shared_inbox)
    worker = world.worker(rng=__import__("random").Random(1))
    delays = []
    while True:
        await worker.run_once()
        [delivery] = await world.deliveries()
        if delivery.state != "pending":
            break
        delays.append(delivery.next_attempt_at - world.clock.now)
        world.clock.advance(delivery.next_attempt_at - world.clock.now)
        # The host breaker must not hide the row from this test's retries.
        async with world.services.sessionmaker() as session, session.begin():
            for host in (await session.execute(select(Host))).scalars():
                host.down_until = 0
    assert delivery.state == "failed"
    assert delivery.attempts == len(delays) + 1
    assert delays[3] > delays[0] * 2  # grows
    # Retried for days, not minutes.
    assert sum(delays) > 3 * 24 * 3600


async def test_gone_shared_inbox_marks_the_host_gone(world: World, remote: FakeRemote) -> None:
    async with world.services.sessionmaker() as session, session.begin():
        session.add(Actor(uri=f"{remote.base_url}/users/x", type="Person", username="x",
                          domain=f"127.0.0.1:{remote.port}", shared_inbox=remote.shared_inbox,
                          inbox=f"{remote.base_url}/users/x/inbox"))
    remote.statuses = [410]
    await world.send(remote.shared_inbox)
    await world.worker().run_once()
    await world.send(remote.shared_inbox, activity_id="2")
    assert await world.worker().run_once() == 0  # the gone host is not tried again
    async with world.services.sessionmaker() as session:
        host = await session.get(Host, f"127.0.0.1:{remote.port}")
    assert host is not None and host.gone
    assert len(remote.posts) == 1


async def test_dead_host_trips_the_breaker_without_holding_up_others(
    world: World, remote: FakeRemote
) -> None:
    # Bound but not listening: connections are refused, as by a dead host, and the port
    # stays ours until the host "comes back" listening on this same socket.
    dead_sock = reserve_port()
    dead_port = port_of(dead_sock)
    dead = f"http://127.0.0.1:{dead_port}/inbox"
    for n in range(6):
        await world.send(dead, activity_id=f"dead{n}")
    worker = world.worker()
    for attempt in range(5):
        if attempt:
            world.clock.advance(13 * 3600)  # past every row's backoff
        await worker.run_once()
    async with world.services.sessionmaker() as session:
        host = await session.get(Host, f"127.0.0.1:{dead_port}")
    assert host is not None and host.failures >= 5 and host.down_until > world.clock.now

    # New work for a live host goes straight out while the dead host is paused.
    await world.send(remote.shared_inbox, activity_id="live")
    assert await worker.run_once() == 1
    assert len(remote.posts) == 1

    # The host comes back: once the pause is over its rows go out and its health resets.
    revived = FakeRemote(sock=dead_sock)
    await revived.start()
    try:
        world.clock.advance(13 * 3600)  # past the pause and the rows' backoff
        while await worker.run_once():
            pass
        assert len(revived.posts) == 6
    finally:
        await revived.stop()
    async with world.services.sessionmaker() as session:
        host = await session.get(Host, f"127.0.0.1:{dead_port}")
    assert host is not None and host.failures == 0 and host.down_until == 0


async def test_rows_of_a_killed_worker_are_delivered_after_the_lease(
    world: World, remote: FakeRemote
) -> None:
    await world.send(remote.shared_inbox, f"{remote.base_url}/users/a/inbox")
    crashed = world.worker(lease_seconds=60)
    rows, _ = await crashed._claim()  # claimed, then the process dies before sending
    assert len(rows) == 2
    survivor = world.worker()
    assert await survivor.run_once() == 0  # still leased
    world.clock.advance(61)
    assert await survivor.run_once() == 2
    assert {d.state for d in await world.deliveries()} == {"done"}
    assert len(remote.posts) == 2


async def test_per_host_and_global_concurrency_are_bounded(
    world: World, remote: FakeRemote
) -> None:
    in_flight = 0
    peak = 0
    original = remote._inbox

    async def slow(request):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return await original(request)

    remote._inbox = slow  # type: ignore[method-assign]
    await remote.stop()
    await remote.start()
    for n in range(20):
        await world.send(f"{remote.base_url}/users/u{n}/inbox", activity_id=f"c{n}")
    await world.worker(per_host=3).run_once()
    while any(d.state == "pending" for d in await world.deliveries()):
        await world.worker(per_host=3).run_once()
    assert peak == 3
    assert len(remote.posts) == 20


@pytest.mark.skipif(not using_postgres(), reason="SKIP LOCKED is a PostgreSQL feature")
async def test_workers_share_the_queue_without_taking_the_same_row(
    world: World, remote: FakeRemote
) -> None:
    for n in range(40):
        await world.send(f"{remote.base_url}/users/u{n}/inbox", activity_id=f"s{n}")
    first, second = (world.worker(per_host=100, per_host_start=100) for _ in range(2))
    first._batch_size = second._batch_size = 25
    (rows_a, _), (rows_b, _) = await asyncio.gather(first._claim(), second._claim())
    ids_a, ids_b = {r.id for r in rows_a}, {r.id for r in rows_b}
    assert ids_a and ids_b
    assert not ids_a & ids_b
    assert len(ids_a | ids_b) == 40


async def test_once_stopping_no_row_in_hand_is_started_and_they_are_handed_back(
    world: World, remote: FakeRemote
) -> None:
    for n in range(3):
        await world.send(f"{remote.base_url}/users/u{n}/inbox", activity_id=f"h{n}")
    remote.delay = 0.5
    worker = world.worker(concurrency=1, per_host=8, per_host_start=8)  # claims 2: 1 ahead
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    for _ in range(1000):  # up to 10 s for the first request to be under way
        if worker._running:
            break
        await asyncio.sleep(0.01)
    assert worker._running and worker._ready  # one in flight, one claimed ahead
    stop.set()  # while the first request is in flight
    await asyncio.wait_for(running, timeout=10)
    assert len(remote.posts) == 1  # the one in flight finished; none started after the stop
    rows = await world.deliveries()
    assert sorted(d.state for d in rows) == ["done", "pending", "pending"]
    assert all(d.claimed_until == 0.0 for d in rows if d.state == "pending")
