"""A host marked gone is revived when it talks to us again (SECURITY 15), against a running
fedi: its shared inbox answered 410, so it was marked gone; then a member there posts in the
group (a signed activity the inbox accepts) and deliveries to it resume. What was closed
while it was gone stays closed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.security.test_delivery_faults import create, group_of, join, post, received
from tests.support.instance import FediInstance, eventually
from tests.support.remote import FakeRemote

pytestmark = pytest.mark.federation


@pytest.fixture
async def remote() -> AsyncIterator[FakeRemote]:
    server = FakeRemote()
    server.add_actor("m")
    await server.start()
    yield server
    await server.stop()


async def test_a_gone_host_that_talks_to_us_again_gets_new_deliveries(
    instances: list[FediInstance], remote: FakeRemote
) -> None:
    a = instances[0]
    group = group_of(a)
    a.start()
    member = remote.actors["m"]
    host = f"127.0.0.1:{remote.port}"
    async with httpx.AsyncClient() as http:
        await join(http, group, remote, member)
        await eventually(lambda: remote.posts, what="the member's Accept")

        remote.statuses = [410]  # the shared inbox says the whole server is gone
        lost = post(a, "sent while it said it was gone")

        async def gone() -> list[Any]:
            return await a.query("SELECT gone FROM hosts WHERE host = :h AND gone", h=host)

        await eventually(gone, what="the host marked gone")
        closed = await a.query("SELECT d.id, d.state, d.last_status FROM deliveries d "
                               "JOIN outbound_activities o ON o.id = d.activity_id "
                               "WHERE o.body LIKE :p", p=f'%"{lost}"%')
        assert [(state, status) for _, state, status in closed] == [("failed", 410)]

        # The server is back and its member posts in the group: it talks to us again.
        remote.statuses = [202]
        activity = create(member, group, 1)
        body = json.dumps(activity).encode()
        inbox = f"{a.base_url}/inbox"
        response = await http.post(inbox, content=body,
                                    headers=remote.signed(member, inbox, body))
        assert response.status_code == 202, response.text

    async def processed() -> list[Any]:
        return await a.query("SELECT state FROM inbox_items WHERE activity_uri = :u "
                             "AND state = 'done'", u=activity["id"])

    await eventually(processed, what="the member's post processed")
    fresh = post(a, "after it came back")
    await eventually(lambda: received(remote, fresh), timeout=30,
                     what="a new post at the revived host")
    assert await a.query("SELECT gone, failures, down_until FROM hosts WHERE host = :h",
                         h=host) == [(False, 0, 0.0)]
    # Closed while it was gone: stays closed (nothing is sent twice or out of the blue).
    again = await a.query("SELECT d.state, d.last_status FROM deliveries d WHERE d.id = :i",
                          i=closed[0][0])
    assert again == [("failed", 410)]
    assert sum(received(remote, lost).values()) == 1  # the attempt answered 410, no other
    assert "talks to us again" in a.log()
    assert "Traceback" not in a.log()
