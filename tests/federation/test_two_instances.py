"""Two fedi processes on loopback federate over real HTTP with real signatures."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.instance import FediInstance, eventually

pytestmark = pytest.mark.federation


@pytest.mark.parametrize("processes", [1, 2])
async def test_follow_group_by_handle_then_post_reaches_follower(
    instances: list[FediInstance], processes: int
) -> None:
    a, b, _ = instances
    a.cli("create-user", "alice", "--admin")
    a.cli("create-group", "cats", "--owner", "alice", "--title", "Cats", "--summary", "Meow")
    b.cli("create-user", "bob")
    a.start(["--workers", str(processes)])
    b.start()

    # bob on B follows the group on A by its handle: WebFinger, signed fetch, Follow.
    followed = b.cli("follow", "--as", "bob", f"@cats@{a.domain}")
    assert followed.stdout.split() == [f"{a.base_url}/groups/cats", "pending"]

    # A verifies the Follow, records bob as a member and answers Accept; B verifies the Accept.
    async def member_on_a() -> list[object]:
        return await a.query(
            "SELECT f.state FROM follows f JOIN actors x ON x.id = f.follower_id "
            "WHERE x.uri = :uri", uri=f"{b.base_url}/users/bob",
        )

    assert await eventually(member_on_a, what="membership on A") == [("accepted",)]

    async def accepted_on_b() -> bool:
        rows = await b.query(
            "SELECT f.state FROM follows f JOIN actors t ON t.id = f.target_id WHERE t.uri = :uri",
            uri=f"{a.base_url}/groups/cats",
        )
        return rows == [("accepted",)]

    await eventually(accepted_on_b, what="Accept processed on B")

    # A post into the group on A is delivered to B, which verifies the group's signature.
    posted = a.cli("post", "--as", "alice", "--group", "cats", "Hello <b>members</b>")
    post_id = posted.stdout.strip()
    assert post_id.startswith(f"{a.base_url}/posts/")

    async def post_on_b() -> list[object]:
        return await b.query("SELECT content, local FROM posts WHERE uri = :uri", uri=post_id)

    rows = await eventually(post_on_b, what="post stored on B")
    content, local = rows[0]
    assert content == "<p>Hello &lt;b&gt;members&lt;/b&gt;</p>"
    assert not local

    # What B stored came through its verifying inbox as the group's Announce.
    inbox = await b.query("SELECT body, state FROM inbox_items ORDER BY id")
    announce = [json.loads(body) for body, state in inbox if json.loads(body)["type"] == "Announce"]
    assert announce and announce[0]["actor"] == f"{a.base_url}/groups/cats"
    assert announce[0]["object"]["type"] == "Create"
    assert announce[0]["object"]["object"]["id"] == post_id
    assert [state for _, state in inbox] == ["done"] * len(inbox)

    # The note is fetchable at its id, as ActivityPub JSON and as a page.
    async with httpx.AsyncClient() as http:
        note = (await http.get(post_id, headers={"Accept": "application/activity+json"})).json()
        page = await http.get(post_id, headers={"Accept": "text/html"})
    assert note["id"] == post_id and note["type"] == "Note"
    assert note["attributedTo"] == f"{a.base_url}/users/alice"
    assert note["audience"] == f"{a.base_url}/groups/cats"
    assert "Hello &lt;b&gt;members&lt;/b&gt;" in page.text

    # Leaving: Undo(Follow) from B ends the membership on A.
    b.cli("unfollow", "--as", "bob", f"@cats@{a.domain}")
    await eventually(lambda: _no_rows(member_on_a), what="membership ended on A")


async def _no_rows(probe):  # type: ignore[no-untyped-def]
    return await probe() == []
