"""A private group across three fedi processes: members-only, mentioned and circle posts
reach exactly their audience, and signed fetches see exactly what their signer may see."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from fedi.activitypub.httpsig import sign_request
from fedi.activitypub.keys import SigningKey
from tests.support.instance import FediInstance, eventually

pytestmark = pytest.mark.federation
AP = "application/activity+json"


async def key_of(instance: FediInstance, name: str) -> SigningKey:
    rows = await instance.query(
        "SELECT key_id, private_key_pem FROM actors WHERE local AND username = :n", n=name
    )
    return SigningKey(rows[0][0], rows[0][1])


async def fetch(url: str, key: SigningKey | None = None, *, html: bool = False) -> httpx.Response:
    headers = {"Accept": "text/html" if html else AP}
    if key is not None:
        headers = sign_request("cavage", "GET", url, headers, None, key)
    async with httpx.AsyncClient() as http:
        return await http.get(url, headers=headers)


async def stored(instance: FediInstance, uri: str) -> Any:
    rows = await instance.query("SELECT visibility FROM posts WHERE uri = :u", u=uri)
    return rows[0][0] if rows else None


async def delivered_to(a: FediInstance, post: str) -> set[str]:
    """Inboxes A queued anything carrying this post for."""
    rows = await a.query(
        "SELECT d.inbox_url, o.body FROM deliveries d "
        "JOIN outbound_activities o ON o.id = d.activity_id"
    )
    return {inbox for inbox, body in rows if post in body}


async def test_private_group_posts_reach_only_their_audience(
    instances: list[FediInstance],
) -> None:
    a, b, c = instances
    a.cli("create-user", "alice")
    a.cli("create-group", "club", "--owner", "alice", "--privacy", "private")
    b.cli("create-user", "bob")
    c.cli("create-user", "carol")
    c.cli("create-user", "dave")  # on C, but not a member
    for instance in instances:
        instance.start()
    club = f"{a.base_url}/groups/club"
    bob, carol, dave = (f"{b.base_url}/users/bob", f"{c.base_url}/users/carol",
                        f"{c.base_url}/users/dave")

    for instance, user in ((b, "bob"), (c, "carol")):
        instance.cli("follow", "--as", user, f"@club@{a.domain}")
    listed = await eventually(lambda: a.cli("mod", "pending", "club").stdout.count("\t") >= 4,
                              what="both requests pending")
    assert listed
    a.cli("mod", "approve", "club", bob)
    a.cli("mod", "approve", "club", carol)

    # A private group does not take public posts.
    refused = a.cli("post", "--as", "alice", "--group", "club", "--visibility", "public", "x",
                    check=False)
    assert refused.returncode == 2 and "members-only at most" in refused.stderr

    # Members-only (the default here) reaches the members on B and C.
    members_post = a.cli("post", "--as", "alice", "--group", "club",
                         "Meeting on Friday.").stdout.strip()
    assert await eventually(lambda: stored(b, members_post), what="on B") == "members"
    assert await eventually(lambda: stored(c, members_post), what="on C") == "members"
    assert await delivered_to(a, members_post) == {f"{b.base_url}/inbox", f"{c.base_url}/inbox"}

    # Fetchable by members with a signed GET; not by a non-member, nor unsigned, nor a page.
    bob_key, carol_key, dave_key = (await key_of(b, "bob"), await key_of(c, "carol"),
                                    await key_of(c, "dave"))
    assert (await fetch(members_post, bob_key)).json()["id"] == members_post
    assert (await fetch(members_post, carol_key)).status_code == 200
    assert (await fetch(members_post, dave_key)).status_code == 404
    assert (await fetch(members_post)).status_code == 404
    assert (await fetch(members_post, html=True)).status_code == 404
    # Forbidden looks exactly like missing.
    missing = await fetch(f"{a.base_url}/posts/0000000000000000000000000000", dave_key)
    forbidden = await fetch(members_post, dave_key)
    assert (missing.status_code, missing.text) == (forbidden.status_code, forbidden.text)
    # Not in the group's public page, outbox or member list for outsiders.
    page = await fetch(club, html=True)
    assert "Meeting on Friday" not in page.text
    outbox = (await fetch(f"{club}/outbox?page=1", dave_key)).json()
    assert members_post not in json.dumps(outbox)
    assert members_post in json.dumps((await fetch(f"{club}/outbox?page=1", bob_key)).json())
    outsiders = (await fetch(f"{club}/followers")).json()
    assert outsiders["totalItems"] == 2 and "first" not in outsiders
    insiders = (await fetch(f"{club}/followers?page=1", bob_key)).json()
    assert set(insiders["orderedItems"]) == {bob, carol}

    # A post for the mentioned people reaches bob alone.
    mentioned = a.cli("post", "--as", "alice", "--group", "club", "--visibility", "mentioned",
                      "--mention", f"@bob@{b.domain}", "Bob: your keys.").stdout.strip()
    await eventually(lambda: stored(b, mentioned), what="mentioned post on B")
    assert await delivered_to(a, mentioned) == {f"{b.base_url}/users/bob/inbox"}
    assert (await fetch(mentioned, bob_key)).status_code == 200
    assert (await fetch(mentioned, carol_key)).status_code == 404

    # A circle post reaches its people: carol, not bob.
    a.cli("circle", "create", "--as", "alice", "friends")
    a.cli("circle", "add", "--as", "alice", "friends", carol)
    circle = a.cli("post", "--as", "alice", "--group", "club", "--visibility", "circle:friends",
                   "Cake at mine.").stdout.strip()
    await eventually(lambda: stored(c, circle), what="circle post on C")
    assert await delivered_to(a, circle) == {f"{c.base_url}/users/carol/inbox"}
    assert (await fetch(circle, carol_key)).status_code == 200
    assert (await fetch(circle, bob_key)).status_code == 404
    assert await stored(b, circle) is None

    # A reply is never more visible than its parent: carol's answer to the circle post
    # stays within the circle's audience, whatever she asks for.
    answer = c.cli("post", "--as", "carol", "--group", f"@club@{a.domain}", "--reply-to",
                   circle, "--visibility", "members", "Yes please!").stdout.strip()
    assert await eventually(lambda: stored(a, answer), what="answer on A") == "mentioned"
    assert await stored(c, answer) == "mentioned"
    audience = await a.query(
        "SELECT x.uri FROM post_audience pa JOIN posts p ON p.id = pa.post_id "
        "JOIN actors x ON x.id = pa.actor_id WHERE p.uri = :u", u=answer,
    )
    assert {uri for (uri,) in audience} == {carol, f"{a.base_url}/users/alice"}

    # Nothing at all was ever addressed or delivered to the non-member.
    for uri in (members_post, mentioned, circle, answer):
        assert f"{dave}/inbox" not in await delivered_to(a, uri)
        assert dave not in (await fetch(uri, carol_key)).text
    await eventually(lambda: _queue_idle(a), what="A's queue drained")
    assert await stored(b, answer) is None


async def _queue_idle(instance: FediInstance) -> bool:
    busy = await instance.query(
        "SELECT (SELECT count(*) FROM inbox_items WHERE state = 'new') + "
        "(SELECT count(*) FROM deliveries WHERE state = 'pending')"
    )
    return busy[0][0] == 0
