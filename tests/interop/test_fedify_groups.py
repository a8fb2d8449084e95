"""A real third-party server (Fedify 2.3.6) takes part in a fedi group, and the no-flood rule.

Fedify's peer reports its own NodeInfo software name, which fedi does not know as a threaded
server, so it is treated as a microblog: it gets the group's boosts of posts, new threads
always and replies only in threads its member took part in (or after asking for "!all").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.instance import FediInstance, eventually

from .fedify import PUBLIC, FedifyPeer, fedify_available

pytestmark = [pytest.mark.interop, pytest.mark.federation]


@pytest.fixture
def peers() -> Iterator[tuple[FedifyPeer, FedifyPeer]]:
    ok, why = fedify_available()
    if not ok:
        pytest.fail(f"the Fedify peer is not installed: {why}")
    x, y = FedifyPeer(), FedifyPeer()
    try:
        x.start(first_knock="rfc9421")
        y.start(first_knock="cavage")
        yield x, y
    finally:
        x.stop()
        y.stop()


def boosts(peer: FedifyPeer, group: str) -> list[str]:
    """Post ids the group has boosted to this peer (verified by Fedify)."""
    return [
        a["objectId"] for a in peer.received()["activities"]
        if a["type"] == "Announce" and a["actor"] == group and a["verified"]
    ]


async def stored(a: FediInstance, uri: str) -> list[Any]:
    return await a.query("SELECT name, thread_id, in_reply_to FROM posts WHERE uri = :u", u=uri)


async def test_fedify_member_threads_replies_and_the_no_flood_rule(
    instances: list[FediInstance], peers: tuple[FedifyPeer, FedifyPeer]
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    a.cli("create-group", "cats", "--owner", "alice")
    a.start()
    group = f"{a.base_url}/groups/cats"
    x, y = peers
    for peer in (x, y):
        await peer.afollow(group)
    for peer in (x, y):
        await eventually(lambda p=peer: [f for f in p.following() if f["state"] == "accepted"],
                         what="joined")

    # X starts a thread by mentioning the group, as Mastodon users do.
    started = await x.acreate_note(
        f"<p><span class=\"h-card\"><a href=\"{group}\">@cats</a></span> Which brush?</p>"
        "<p>Long-haired cat here.</p>",
        to=[PUBLIC], mentions=[group],
    )
    thread = started["id"]
    row = await eventually(lambda: stored(a, thread), what="thread stored on A")
    assert row[0][0] == "Which brush?"  # title: first line without the mention
    # Every member gets a new thread (the author's own server is not sent its own post).
    await eventually(lambda: thread in boosts(y, group), what="Y gets the new thread")

    # Y replies in the thread: Y took part now. X (the thread's author) took part too.
    reply_y = (await y.acreate_note("<p>A wide-tooth comb.</p>", to=[PUBLIC],
                                    cc=[group], in_reply_to=thread, mentions=[group]))["id"]
    await eventually(lambda: stored(a, reply_y), what="Y's reply stored")
    await eventually(lambda: reply_y in boosts(x, group), what="X (participant) gets Y's reply")

    # A second microblog member who never took part: a local user posts a reply on A,
    # X and Y (participants) get it; a third peer that only follows does not.
    z = FedifyPeer()
    z.start()
    try:
        await z.afollow(group)
        await eventually(lambda: [f for f in z.following() if f["state"] == "accepted"],
                         what="Z joined")
        reply_a = a.cli("post", "--as", "alice", "--group", "cats", "--reply-to", thread,
                        "Brush weekly.").stdout.strip()
        await eventually(lambda: reply_a in boosts(x, group) and reply_a in boosts(y, group),
                         what="participants get the reply")
        new_thread = a.cli("post", "--as", "alice", "--group", "cats",
                           "Vet recommendations?").stdout.strip()
        await eventually(lambda: new_thread in boosts(z, group), what="Z gets new threads")
        assert reply_a not in boosts(z, group), "a non-participant got a reply: timeline flood"
        assert reply_y not in boosts(z, group)

        # Z asks for everything; later replies reach Z too.
        await z.acreate_note(f"<p>@cats@{a.domain} !all</p>", to=[group], mentions=[group])
        await eventually(lambda: _wants_all(a, z.actor_id), what="Z's setting recorded")
        later = a.cli("post", "--as", "alice", "--group", "cats", "--reply-to", thread,
                      "And trim the claws.").stdout.strip()
        await eventually(lambda: later in boosts(z, group), what="Z gets replies after !all")
    finally:
        z.stop()

    # Nothing Fedify got from the group failed its verification.
    for peer in (x, y):
        assert peer.received()["rejected"] == []


async def _wants_all(a: FediInstance, actor: str) -> bool:
    rows = await a.query(
        "SELECT f.wants_all_replies FROM follows f JOIN actors x ON x.id = f.follower_id "
        "WHERE x.uri = :u", u=actor,
    )
    return bool(rows) and bool(rows[0][0])
