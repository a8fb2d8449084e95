"""Domain policy between real instances over HTTP: A hosts the group, B and C have members.

All three listen on 127.0.0.1 with different ports, so C's domain is `127.0.0.1:PORT`: a block
with a port covers exactly that instance.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from fedi.activitypub.httpsig import sign_request
from fedi.activitypub.keys import SigningKey
from fedi.federation.reporting import report_post
from fedi.store.models import Actor, Post
from tests.support.instance import FediInstance, eventually

pytestmark = pytest.mark.federation


async def follow_state(instance: FediInstance, user: str, target: str) -> str | None:
    found = await instance.query(
        "SELECT f.state FROM follows f JOIN actors u ON u.id = f.follower_id "
        "JOIN actors t ON t.id = f.target_id WHERE u.username = :user AND u.local "
        "AND t.uri = :target",
        user=user, target=target,
    )
    return found[0][0] if found else None


async def post_row(instance: FediInstance, uri: str) -> Any:
    found = await instance.query(
        "SELECT content, deleted_at, held FROM posts WHERE uri = :uri", uri=uri
    )
    return found[0] if found else None


async def queue_idle(instance: FediInstance) -> bool:
    busy = await instance.query(
        "SELECT (SELECT count(*) FROM inbox_items WHERE state = 'new') + "
        "(SELECT count(*) FROM deliveries WHERE state = 'pending')"
    )
    return bool(busy[0][0] == 0)


async def signed_get(instance: FediInstance, user: str, url: str) -> httpx.Response:
    """GET signed with a local user's key, as their server would fetch on their behalf."""
    [(key_id, private_pem)] = await instance.query(
        "SELECT key_id, private_key_pem FROM actors WHERE username = :u AND local", u=user)
    headers = sign_request("cavage", "GET", url, {"Accept": "application/activity+json"}, None,
                           SigningKey(key_id, private_pem))
    async with httpx.AsyncClient() as http:
        return await http.get(url, headers=headers)


async def accepted(instance: FediInstance, user: str, target: str) -> bool:
    return await follow_state(instance, user, target) == "accepted"


async def join(member: FediInstance, user: str, group: FediInstance, name: str = "cats") -> None:
    member.cli("follow", "--as", user, f"@{name}@{group.domain}")
    uri = f"{group.base_url}/groups/{name}"
    await eventually(lambda: accepted(member, user, uri), what=f"{user} joined {name}")


def setup(a: FediInstance, b: FediInstance, c: FediInstance) -> None:
    a.cli("create-user", "alice", "--admin")
    a.cli("create-group", "cats", "--owner", "alice", "--title", "Cats")
    b.cli("create-user", "bob")
    c.cli("create-user", "carol")
    for instance in (a, b, c):
        instance.start()


async def test_suspending_a_domain_cuts_it_off(instances: list[FediInstance]) -> None:
    a, b, c = instances
    setup(a, b, c)
    handle = f"@cats@{a.domain}"
    await join(b, "bob", a)
    await join(c, "carol", a)
    carol = f"{c.base_url}/users/carol"
    a.cli("follow", "--as", "alice", f"@carol@{c.domain}")
    await eventually(lambda: accepted(a, "alice", carol), what="alice follows carol")

    # Before: carol may fetch a members-only post, and her posts reach bob through the group.
    members_only = a.cli("post", "--as", "alice", "--group", "cats", "--visibility", "members",
                         "Members only words").stdout.strip()
    fetched = await signed_get(c, "carol", members_only)
    assert fetched.status_code == 200 and "Members only words" in fetched.text
    before = c.cli("post", "--as", "carol", "--group", handle, "Hello from C").stdout.strip()
    await eventually(lambda: post_row(b, before), what="C's post relayed to B")

    # C goes down; A queues posts for it.
    c.stop()
    a.cli("post", "--as", "alice", "--group", "cats", "While C was away")
    await eventually(
        lambda: a.query("SELECT 1 FROM deliveries WHERE host = :h AND state = 'pending' "
                        "AND attempts > 0", h=c.domain),
        what="A tried to deliver to C and will retry",
    )

    out = a.cli("admin", "domain-block", "add", c.domain, "--severity", "suspend",
                "--reason", "spam").stdout
    assert f"blocked {c.domain} (suspend)" in out

    # Queued rows are dropped, follows in both directions severed, C's posts hidden.
    states = {s for (s,) in await a.query("SELECT state FROM deliveries WHERE host = :h",
                                           h=c.domain)}
    assert "pending" not in states and "dropped" in states
    links = await a.query(
        "SELECT count(*) FROM follows f JOIN actors x ON x.id IN (f.follower_id, f.target_id) "
        "WHERE x.domain = :d", d=c.domain)
    assert links[0][0] == 0
    hidden = await post_row(a, before)
    assert hidden is not None and hidden[1] is not None

    # C cannot fetch A's members-only posts any more (refused before its key is fetched).
    fetched = await signed_get(c, "carol", members_only)
    assert fetched.status_code in (401, 403, 404)
    assert "Members only words" not in fetched.text

    # B is untouched: another port, another instance.
    assert await accepted(b, "bob", f"{a.base_url}/groups/cats")

    # C comes back and carol posts: A refuses it (C's server thinks she is still a member).
    restarted = time.time()
    c.start()
    # By the group's URL, which C knows: A now refuses C's signed fetches (403), even of
    # the group's actor, so C could not look the handle up again.
    after = c.cli("post", "--as", "carol", "--group", f"{a.base_url}/groups/cats",
                  "Still here").stdout.strip()
    await eventually(
        lambda: c.query("SELECT 1 FROM deliveries WHERE host = :h AND last_status = 403",
                        h=a.domain),
        what="A's inbox answers 403 to C",
    )
    from_b = b.cli("post", "--as", "bob", "--group", handle, "B still talks").stdout.strip()
    await eventually(lambda: post_row(a, from_b), what="B's post reaches A")
    await eventually(lambda: queue_idle(a), what="A's queue drained")
    assert await post_row(a, after) is None
    assert await post_row(b, after) is None

    # A sends nothing to C any more, and fetches nothing from it.
    a.cli("post", "--as", "alice", "--group", "cats", "After the suspension")
    await eventually(lambda: queue_idle(a), what="A's queue drained")
    sent = await a.query(
        "SELECT count(*) FROM deliveries WHERE host = :h AND state <> 'dropped' AND created_at > "
        "(SELECT created_at FROM domain_blocks WHERE domain = :h)", h=c.domain)
    assert sent[0][0] == 0
    heard = await c.query("SELECT count(*) FROM inbox_items WHERE actor_uri LIKE :a "
                          "AND received_at > :t", a=f"{a.base_url}/%", t=restarted)
    assert heard[0][0] == 0
    refused = a.cli("follow", "--as", "alice", f"@carol@{c.domain}", check=False)
    assert refused.returncode == 2
    assert "suspended" in refused.stderr


async def test_silenced_content_stays_out_of_public_pages_but_reaches_members(
    instances: list[FediInstance],
) -> None:
    a, b, c = instances
    setup(a, b, c)
    handle = f"@cats@{a.domain}"
    await join(b, "bob", a)
    await join(c, "carol", a)
    a.cli("admin", "domain-block", "add", c.domain, "--severity", "silence")

    from_c = c.cli("post", "--as", "carol", "--group", handle, "--title", "Quiet thread",
                   "Silenced words").stdout.strip()
    from_b = b.cli("post", "--as", "bob", "--group", handle, "--title", "Loud thread",
                   "Public words").stdout.strip()
    # Members still get it: the group relays carol's post to bob, and carol's membership holds.
    await eventually(lambda: post_row(b, from_c), what="C's post relayed to B")
    await eventually(lambda: post_row(a, from_b), what="B's post on A")
    assert await accepted(c, "carol", f"{a.base_url}/groups/cats")

    async with httpx.AsyncClient() as http:
        page = (await http.get(f"{a.base_url}/groups/cats", headers={"Accept": "text/html"})).text
    assert "Public words" in page or "Loud thread" in page
    assert "Silenced words" not in page and "Quiet thread" not in page


async def test_allowlist_mode_federates_only_with_listed_domains(
    instances: list[FediInstance],
) -> None:
    a, b, c = instances
    setup(a, b, c)
    a.cli("admin", "federation-mode", "allowlist")
    a.cli("admin", "allow", b.domain)

    await join(b, "bob", a)  # listed: accepted

    # Unlisted: carol's Follow, properly signed, is refused at A's inbox before any fetch.
    [(key_id, private_pem)] = await c.query(
        "SELECT key_id, private_key_pem FROM actors WHERE username = 'carol' AND local")
    carol = f"{c.base_url}/users/carol"
    inbox = f"{a.base_url}/groups/cats/inbox"
    body = json.dumps({"@context": "https://www.w3.org/ns/activitystreams",
                       "id": f"{c.base_url}/activities/follow-1", "type": "Follow",
                       "actor": carol, "object": f"{a.base_url}/groups/cats"}).encode()
    headers = sign_request("cavage", "POST", inbox, {"Content-Type": "application/activity+json"},
                           body, SigningKey(key_id, private_pem))
    async with httpx.AsyncClient() as http:
        response = await http.post(inbox, content=body, headers=headers)
    assert response.status_code == 403
    assert "not on this instance's list" in response.json()["error"]
    assert await a.query("SELECT 1 FROM actors WHERE domain = :d", d=c.domain) == []

    # A forwards a report about bob's post to B: a Flag from A's instance actor, verified
    # and filed by B.
    post = b.cli("post", "--as", "bob", "--group", f"@cats@{a.domain}", "Report me").stdout.strip()
    await eventually(lambda: post_row(a, post), what="bob's post on A")
    await _report_on(a, post, "bob is rude")
    a.cli("admin", "report-forward", "1")
    instance_actor = f"{a.base_url}/actor"
    flags = await eventually(
        lambda: b.query("SELECT body FROM inbox_items WHERE actor_uri = :a AND state = 'done'",
                        a=instance_actor),
        what="B received the Flag",
    )
    flag = json.loads(flags[0][0])
    assert flag["type"] == "Flag" and flag["object"] == [f"{b.base_url}/users/bob", post]
    reports = await eventually(lambda: b.query(
        "SELECT r.comment, t.username FROM reports r JOIN actors t ON t.id = r.target_id"),
        what="B filed the report")
    assert reports == [("bob is rude", "bob")]


async def _report_on(instance: FediInstance, post_uri: str, comment: str) -> None:
    """A local member of A reports a post (there is no command for members yet)."""
    engine = create_async_engine(instance.database_url)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            alice = (await session.execute(
                select(Actor).where(Actor.username == "alice", Actor.local))).scalar_one()
            post = (await session.execute(select(Post).where(Post.uri == post_uri))).scalar_one()
            await report_post(session, alice, post, comment)
    finally:
        await engine.dispose()
