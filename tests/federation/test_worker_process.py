"""`fedi worker` as its own process: killed mid-batch, nothing is lost."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.instance import FediInstance, eventually
from tests.support.remote import FakeRemote

pytestmark = pytest.mark.federation


def announced_post(activity: dict[str, object]) -> object:
    """The post a group's Announce carries: a boost of the post, or the wrapped Create."""
    if activity.get("type") != "Announce":
        return None
    inner = activity["object"]
    return inner["object"]["id"] if isinstance(inner, dict) else inner
MEMBERS = 12


@pytest.fixture
async def remote() -> AsyncIterator[FakeRemote]:
    # No shared inbox: every member is its own delivery, so a batch has many rows.
    server = FakeRemote(publish_shared_inbox=False)
    for n in range(MEMBERS):
        server.add_actor(f"m{n}")
    await server.start()
    yield server
    await server.stop()


async def test_killed_worker_loses_nothing(
    instances: list[FediInstance], remote: FakeRemote
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    a.cli("create-group", "cats", "--owner", "alice")
    lease = {"FEDI_DELIVERY_LEASE_SECONDS": "3", "FEDI_DELIVERY_PER_HOST": "2"}
    a.start(["--no-worker"], env=lease)
    worker = a.spawn("worker", env=lease)

    group = f"{a.base_url}/groups/cats"
    async with httpx.AsyncClient() as http:
        for n, actor in enumerate(remote.actors.values()):
            body = json.dumps({"id": f"{actor.uri}/follow", "type": "Follow", "actor": actor.uri,
                               "object": group}).encode()
            response = await http.post(
                f"{group}/inbox", content=body, headers=remote.signed(actor, f"{group}/inbox", body)
            )
            assert response.status_code == 202, (n, response.text)
    await eventually(lambda: len(remote.posts) >= MEMBERS, what="all Accepts delivered")

    # Each inbox now takes a second to answer; the worker is killed while the batch is in flight.
    remote.delay = 1.0
    remote.posts.clear()
    post_id = a.cli("post", "--as", "alice", "--group", "cats", "survives").stdout.strip()
    await eventually(lambda: len(remote.posts) >= 1, what="the batch has started")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    arrived_before_kill = {p.path for p in remote.posts}
    assert len(arrived_before_kill) < MEMBERS

    # A new worker picks up the killed worker's rows once their lease runs out.
    remote.delay = 0.0
    a.spawn("worker", env=lease)

    def everyone_has_it() -> bool:
        got = {p.path for p in remote.posts if announced_post(p.json) == post_id}
        return got == {f"/users/m{n}/inbox" for n in range(MEMBERS)}

    await eventually(everyone_has_it, timeout=30, what="every member got the post")

    async def all_done() -> bool:
        rows = await a.query("SELECT state FROM deliveries")
        return {state for (state,) in rows} == {"done"}

    await eventually(all_done, what="every delivery row done")
