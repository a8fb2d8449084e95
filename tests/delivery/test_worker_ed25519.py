"""Which key signs a delivery: Ed25519 (RFC 9421) to hosts whose actors publish an Ed25519
Multikey, RSA to everyone else, and RSA again for a host that refuses the Ed25519 signature."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from fedi.activitypub import integrity
from fedi.activitypub.httpsig import parse_signature, verify_request
from fedi.activitypub.keys import multikey_public_pem
from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.delivery.enqueue import enqueue
from fedi.delivery.signers import ED25519_TTL
from fedi.delivery.worker import DeliveryWorker
from fedi.services import Services, build_services
from fedi.store.migrate import migrate
from fedi.store.models import Actor, Delivery
from tests.support.remote import FakeRemote, InboxPost


@dataclass
class World:
    services: Services
    group: Actor

    def worker(self, monotonic: Callable[[], float] = time.monotonic) -> DeliveryWorker:
        return DeliveryWorker(self.services.sessionmaker, self.services.client,
                              clock=lambda: time.time() + 5, monotonic=monotonic)

    async def send(self, inbox: str, activity_id: str) -> None:
        activity = {"id": f"http://fedi.test/activities/{activity_id}", "type": "Announce",
                    "actor": self.group.uri, "object": "http://fedi.test/posts/1"}
        async with self.services.sessionmaker() as session, session.begin():
            await enqueue(session, self.group, activity, [inbox])

    async def know(self, remote: FakeRemote, name: str) -> Actor:
        async with self.services.sessionmaker() as session, session.begin():
            return await self.services.resolver.actor(session, remote.actors[name].uri,
                                                      refresh=True)

    async def states(self) -> list[tuple[str, int | None]]:
        async with self.services.sessionmaker() as session:
            rows = await session.execute(
                select(Delivery.state, Delivery.last_status).order_by(Delivery.id))
            return [(state, status) for state, status in rows.all()]


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
    yield World(services, group)
    await services.close()


@pytest.fixture
async def remotes() -> AsyncIterator[tuple[FakeRemote, FakeRemote]]:
    """One host whose actor publishes an Ed25519 Multikey, one whose actor does not."""
    modern, plain = FakeRemote(), FakeRemote()
    modern.add_actor("fay")
    modern.assertion_keys["fay"] = integrity.generate_ed25519_keypair()
    plain.add_actor("rob")
    for remote in (modern, plain):
        await remote.start()
    yield modern, plain
    for remote in (modern, plain):
        await remote.stop()


def signature_of(post: InboxPost, inbox: str, public_pem: str) -> tuple[str, str, str | None]:
    """(scheme, keyid, alg) of a POST whose signature verifies with `public_pem`."""
    headers = {k.lower(): v for k, v in post.headers.items()}
    params = parse_signature(headers)
    verify_request(params, "POST", inbox, headers, post.body, public_pem)
    return params.scheme, params.key_id, params.algorithm


async def test_ed25519_to_hosts_that_publish_it_rsa_to_the_rest(
    world: World, remotes: tuple[FakeRemote, FakeRemote]
) -> None:
    modern, plain = remotes
    await world.know(modern, "fay")
    await world.know(plain, "rob")
    await world.send(modern.shared_inbox, "1")
    await world.send(plain.shared_inbox, "2")
    assert await world.worker().run_once() == 2
    assert await world.states() == [("done", 202), ("done", 202)]

    group = world.group
    assert group.assertion_public_key and group.public_key_pem
    [to_modern], [to_plain] = modern.posts, plain.posts
    assert signature_of(to_modern, modern.shared_inbox,
                        multikey_public_pem(group.assertion_public_key)) == (
        "rfc9421", f"{group.uri}/ed25519-key", "ed25519")
    assert signature_of(to_plain, plain.shared_inbox, group.public_key_pem) == (
        "cavage", f"{group.uri}#main-key", "rsa-sha256")


async def test_a_host_that_refuses_ed25519_gets_rsa_from_then_on(
    world: World, remotes: tuple[FakeRemote, FakeRemote]
) -> None:
    modern, _ = remotes
    await world.know(modern, "fay")
    modern.statuses = [401, 202]  # refuses the first knock only
    await world.send(modern.shared_inbox, "1")
    worker = world.worker()
    assert await worker.run_once() == 1
    assert await world.states() == [("done", 202)]
    pem = world.group.public_key_pem or ""
    first, second = modern.posts
    assert parse_signature({k.lower(): v for k, v in first.headers.items()}).algorithm == "ed25519"
    assert signature_of(second, modern.shared_inbox, pem)[0] == "cavage"

    await world.send(modern.shared_inbox, "2")
    assert await worker.run_once() == 1
    assert len(modern.posts) == 3  # one knock: RSA straight away
    assert signature_of(modern.posts[2], modern.shared_inbox, pem)[0] == "cavage"


async def test_a_host_that_starts_publishing_ed25519_is_learned_after_the_ttl(
    world: World, remotes: tuple[FakeRemote, FakeRemote]
) -> None:
    _, plain = remotes
    await world.know(plain, "rob")
    now = [1000.0]
    worker = world.worker(monotonic=lambda: now[0])

    def algorithms() -> list[str | None]:
        return [parse_signature({k.lower(): v for k, v in p.headers.items()}).algorithm
                for p in plain.posts]

    await world.send(plain.shared_inbox, "1")
    await worker.run_once()
    # The actor now publishes a Multikey (an upgrade); the worker still knows the host as RSA.
    plain.assertion_keys["rob"] = integrity.generate_ed25519_keypair()
    await world.know(plain, "rob")
    await world.send(plain.shared_inbox, "2")
    now[0] += ED25519_TTL - 1
    await worker.run_once()
    now[0] += 2
    await world.send(plain.shared_inbox, "3")
    await worker.run_once()
    assert algorithms() == ["rsa-sha256", "rsa-sha256", "ed25519"]
