"""Keep-alive: deliveries to one host reuse the pooled client's connections, so a far host
costs one round trip per delivery, not a TCP (and TLS) handshake each time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.delivery.loopback import Fedi, LoopbackInbox, start_fedi

N = 60


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[Fedi]:
    world = await start_fedi(database_url)
    yield world
    await world.services.close()


async def test_deliveries_to_one_host_reuse_few_connections(fedi: Fedi) -> None:
    inbox = LoopbackInbox(delay=0.02)
    await inbox.start()
    try:
        for i in range(N):
            await fedi.send({"id": f"http://fedi.test/activities/{i}", "type": "Create",
                             "actor": fedi.group.uri,
                             "object": {"id": f"http://fedi.test/posts/{i}", "type": "Note"}},
                            f"{inbox.base}/users/u{i}/inbox")
        worker = fedi.worker(per_host=4, per_host_start=4)
        await worker.run_once()
        # A second round later on finds the connections still open.
        for i in range(N, 2 * N):
            await fedi.send({"id": f"http://fedi.test/activities/{i}", "type": "Like",
                             "actor": fedi.group.uri, "object": "http://fedi.test/posts/1"},
                            f"{inbox.base}/users/u{i}/inbox")
        await worker.run_once()
    finally:
        await inbox.stop()
    assert len(inbox.arrivals) == 2 * N
    assert inbox.peak_in_flight <= 4
    # At most one connection per slot, kept across both rounds.
    assert len(inbox.connections) <= 4, inbox.connections
