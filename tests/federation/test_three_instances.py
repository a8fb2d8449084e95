"""Three fedi processes: A hosts groups, B and C have members. Real HTTP, real signatures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.instance import FediInstance, eventually

pytestmark = pytest.mark.federation


async def rows(instance: FediInstance, sql: str, **params: Any) -> list[Any]:
    return await instance.query(sql, **params)


async def follow_state(instance: FediInstance, user: str, group: str) -> str | None:
    found = await rows(
        instance,
        "SELECT f.state FROM follows f JOIN actors u ON u.id = f.follower_id "
        "JOIN actors g ON g.id = f.target_id WHERE u.username = :user AND u.local "
        "AND g.uri = :group",
        user=user, group=group,
    )
    return found[0][0] if found else None


async def post_row(instance: FediInstance, uri: str) -> Any:
    found = await rows(
        instance, "SELECT content, thread_id, deleted_at, name FROM posts WHERE uri = :uri", uri=uri
    )
    return found[0] if found else None


async def test_members_on_two_servers_hold_a_discussion(instances: list[FediInstance]) -> None:
    a, b, c = instances
    a.cli("create-user", "alice")
    a.cli("create-group", "cats", "--owner", "alice", "--title", "Cats")
    a.cli("create-group", "quiet", "--owner", "alice", "--join", "approval",
          "--question", "Why do you want to join?")
    a.cli("create-group", "secret", "--owner", "alice", "--join", "invite")
    b.cli("create-user", "bob")
    c.cli("create-user", "carol")
    for instance in instances:
        instance.start()
    cats = f"{a.base_url}/groups/cats"
    handle = f"@cats@{a.domain}"

    b.cli("follow", "--as", "bob", handle)
    c.cli("follow", "--as", "carol", handle)
    for member, name in ((b, "bob"), (c, "carol")):
        await eventually(lambda m=member, n=name: _is(follow_state(m, n, cats), "accepted"),
                         what=f"{name} joined")

    # B's member starts a thread; C's member sees it.
    thread = b.cli("post", "--as", "bob", "--group", handle, "--title", "Favourite naps",
                   "Where do your cats sleep?").stdout.strip()
    assert thread.startswith(f"{b.base_url}/posts/")
    on_c = await eventually(lambda: post_row(c, thread), what="thread on C")
    assert "Where do your cats sleep?" in on_c[0]
    on_a = await eventually(lambda: post_row(a, thread), what="thread on A")
    assert on_a[3] == "Favourite naps"

    # C replies; B sees the reply in the same thread.
    reply = c.cli("post", "--as", "carol", "--group", handle, "--reply-to", thread,
                  "On the radiator.").stdout.strip()
    reply_on_b = await eventually(lambda: post_row(b, reply), what="reply on B")
    thread_on_b = await post_row(b, thread)
    assert reply_on_b[1] == thread_on_b[1]  # same thread
    assert "radiator" in reply_on_b[0]

    # An edit propagates.
    b.cli("edit", "--as", "bob", thread, "Where do your cats sleep at night?")
    await eventually(lambda: _contains(post_row(c, thread), "at night"), what="edit on C")

    # A delete propagates.
    c.cli("delete", "--as", "carol", reply)
    await eventually(lambda: _deleted(post_row(b, reply)), what="delete on B")
    await eventually(lambda: _deleted(post_row(a, reply)), what="delete on A")

    # A banned member's posts are not relayed; their server learns of the ban.
    carol = f"{c.base_url}/users/carol"
    a.cli("mod", "ban", "cats", carol, "--reason", "off topic")
    await eventually(lambda: _has_activity(c, "Block", f"{a.base_url}/groups/cats"),
                     what="C told of the ban")
    # C takes the group's Block as the end of carol's membership, so it refuses her post at
    # home and nothing reaches A or B. (A refusing a banned member's post that arrives
    # anyway is held, for local and remote authors alike, by tests/groups/test_one_way_in.py.)
    await eventually(lambda: _not_member(c, "carol", cats), what="C ends carol's membership")
    banned = c.cli("post", "--as", "carol", "--group", handle, "--reply-to", thread,
                   "Still here!", check=False)
    assert banned.returncode != 0 and "not a member" in banned.stderr, banned.stderr
    rows = await c.query("SELECT count(*) FROM posts WHERE content LIKE :t", t="%Still here!%")
    assert rows == [(0,)]
    # Relaying is asynchronous: give a wrong relay every chance to arrive before checking.
    await eventually(lambda: _queue_idle(a), what="A's queue drained")
    for server in (a, b):
        assert await server.query("SELECT count(*) FROM posts WHERE content LIKE :t",
                                  t="%Still here!%") == [(0,)]

    # An approval group holds a join until a moderator approves it.
    quiet = f"{a.base_url}/groups/quiet"
    b.cli("follow", "--as", "bob", f"@quiet@{a.domain}")
    await eventually(lambda: _pending_on_a(a, "quiet"), what="request pending on A")
    assert await follow_state(b, "bob", quiet) == "pending"
    listed = a.cli("mod", "pending", "quiet").stdout
    assert f"{b.base_url}/users/bob" in listed
    a.cli("mod", "approve", "quiet", f"{b.base_url}/users/bob")
    await eventually(lambda: _is(follow_state(b, "bob", quiet), "accepted"), what="approved")

    # An invite-only group refuses a join without a valid invite, and admits one with it.
    secret = f"{a.base_url}/groups/secret"
    b.cli("follow", "--as", "bob", f"@secret@{a.domain}")
    await eventually(lambda: _is(follow_state(b, "bob", secret), "rejected"), what="refused")
    link = a.cli("mod", "invite", "secret", "--max-uses", "1").stdout.strip()
    assert link.startswith(f"{secret}/invite/")
    b.cli("follow", "--as", "bob", f"@secret@{a.domain}", "--invite", link)
    await eventually(lambda: _is(follow_state(b, "bob", secret), "accepted"), what="invited in")
    # The invite was single-use: carol cannot use it again.
    c.cli("follow", "--as", "carol", f"@secret@{a.domain}", "--invite", link)
    await eventually(lambda: _is(follow_state(c, "carol", secret), "rejected"),
                     what="used invite refused")


async def _is(probe: Any, expected: str) -> bool:
    return await probe == expected


async def _contains(probe: Any, text: str) -> bool:
    found = await probe
    return found is not None and text in found[0]


async def _deleted(probe: Any) -> bool:
    found = await probe
    return found is not None and found[2] is not None


async def _has_activity(instance: FediInstance, kind: str, actor: str) -> bool:
    for (body,) in await rows(instance, "SELECT body FROM inbox_items"):
        activity = json.loads(body)
        if activity.get("type") == kind and activity.get("actor") == actor:
            return True
    return False


async def _queue_idle(instance: FediInstance) -> bool:
    busy = await rows(
        instance,
        "SELECT (SELECT count(*) FROM inbox_items WHERE state = 'new') + "
        "(SELECT count(*) FROM deliveries WHERE state = 'pending')",
    )
    return busy[0][0] == 0


async def _pending_on_a(instance: FediInstance, group: str) -> bool:
    found = await rows(
        instance,
        "SELECT 1 FROM follows f JOIN actors g ON g.id = f.target_id "
        "WHERE g.username = :group AND g.local AND f.state = 'pending'",
        group=group,
    )
    return bool(found)


async def _not_member(instance: FediInstance, name: str, group: str) -> bool:
    return await follow_state(instance, name, group) != "accepted"

