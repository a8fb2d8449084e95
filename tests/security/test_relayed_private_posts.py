"""A member's non-public post, written on their own server, reaches members on a third server.

The group (on A) relays bob's (on B) members-only Create to carol (on C). C cannot fetch the
post from B (B does not know C's carol is in the audience), and must not take the group's
word for a post that is not the group's (SECURITY 19). B signs the Create with bob's Ed25519
key (FEP-8b32 object integrity proof, key published per FEP-521a); C verifies the proof
against bob's actor on B and takes the post as bob wrote it.
"""

from __future__ import annotations

import pytest

from tests.support.instance import FediInstance, eventually

pytestmark = pytest.mark.federation


async def visibility(instance: FediInstance, uri: str) -> str | None:
    rows = await instance.query("SELECT visibility FROM posts WHERE uri = :u", u=uri)
    return rows[0][0] if rows else None


async def test_members_post_from_a_third_server_reaches_the_members(
    instances: list[FediInstance],
) -> None:
    a, b, c = instances
    a.cli("create-user", "alice")
    a.cli("create-group", "club", "--owner", "alice", "--privacy", "private")
    b.cli("create-user", "bob")
    c.cli("create-user", "carol")
    for instance in instances:
        instance.start()
    for instance, user in ((b, "bob"), (c, "carol")):
        instance.cli("follow", "--as", user, f"@club@{a.domain}")
    await eventually(lambda: a.cli("mod", "pending", "club").stdout.count("\t") >= 4,
                     what="both requests pending")
    a.cli("mod", "approve", "club", f"{b.base_url}/users/bob")
    a.cli("mod", "approve", "club", f"{c.base_url}/users/carol")

    uri = b.cli("post", "--as", "bob", "--group", f"@club@{a.domain}", "--visibility",
                "members", "Minutes of the meeting.").stdout.strip()
    assert await eventually(lambda: visibility(a, uri), what="on A") == "members"
    assert await eventually(lambda: visibility(c, uri), what="on C") == "members"
    rows = await c.query(
        "SELECT p.content, x.uri FROM posts p JOIN actors x ON x.id = p.author_id "
        "WHERE p.uri = :u", u=uri)
    assert rows and "Minutes of the meeting." in rows[0][0]
    assert rows[0][1] == f"{b.base_url}/users/bob"

    # A post B sent as public is members-only in the private group, and so on C too: a
    # relayed post is never shown more widely than the group relayed it.
    wide = b.cli("post", "--as", "bob", "--group", f"@club@{a.domain}",
                 "Meant for everyone.").stdout.strip()
    assert await eventually(lambda: visibility(a, wide), what="on A") == "members"
    assert await eventually(lambda: visibility(c, wide), what="on C") == "members"
