"""fedi and a real third-party ActivityPub server (Fedify 2.3.6) federate on loopback.

Fedify verifies everything fedi sends with its own code; fedi verifies Fedify's RFC 9421 and
draft-cavage signatures (one peer knocks first with each).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.instance import FediInstance, eventually

from .fedify import FedifyPeer, fedify_available

pytestmark = [pytest.mark.interop, pytest.mark.federation]


@pytest.fixture
def peer_factory() -> Iterator[list[FedifyPeer]]:
    ok, why = fedify_available()
    if not ok:
        pytest.fail(f"the Fedify peer is not installed: {why}")
    started: list[FedifyPeer] = []
    yield started
    for peer in started:
        peer.stop()


def start_peer(started: list[FedifyPeer], first_knock: str) -> FedifyPeer:
    peer = FedifyPeer()
    peer.start(first_knock=first_knock)
    started.append(peer)
    return peer


def inbox_posts_to(peer: FedifyPeer, base_url: str) -> list[dict[str, object]]:
    return [
        r for r in peer.received()["outgoing"]
        if r["method"] == "POST" and str(r["url"]).startswith(base_url)
    ]


@pytest.mark.parametrize("first_knock", ["rfc9421", "cavage"])
async def test_fedify_resolves_follows_and_receives_group_posts(
    instances: list[FediInstance], peer_factory: list[FedifyPeer], first_knock: str
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    a.cli("create-group", "cats", "--owner", "alice", "--title", "Cats")
    a.start()
    group = f"{a.base_url}/groups/cats"
    peer = start_peer(peer_factory, first_knock)

    # Fedify resolves our group and parses its key.
    summary = (await peer.alookup(group))["summary"]
    assert summary["type"] == "Group"
    assert summary["id"] == group
    assert summary["inbox"] == f"{group}/inbox"
    assert [k["id"] for k in summary["publicKeys"]] == [f"{group}#main-key"]

    # Fedify follows; we verify its signature on the first knock (no fallback needed).
    await peer.afollow(group)
    following = await eventually(
        lambda: [f for f in peer.following() if f["state"] == "accepted"],
        what="Fedify sees our Accept",
    )
    assert following[0]["target"] == group
    posts = inbox_posts_to(peer, a.base_url)
    assert posts[0]["signatureScheme"] == first_knock
    assert posts[0]["status"] == 202, posts
    accept = peer.received()["activities"]
    assert [x["type"] for x in accept] == ["Accept"]
    assert accept[0]["actor"] == group and accept[0]["verified"] is True

    members = await a.query(
        "SELECT f.state FROM follows f JOIN actors x ON x.id = f.follower_id WHERE x.uri = :uri",
        uri=peer.actor_id,
    )
    assert members == [("accepted",)]

    # A group post reaches Fedify, which verifies the group's signature.
    post_id = a.cli("post", "--as", "alice", "--group", "cats", "Hello Fedify").stdout.strip()
    announce = await eventually(
        lambda: [x for x in peer.received()["activities"] if x["type"] == "Announce"],
        what="Fedify receives the Announce",
    )
    assert announce[0]["actor"] == group and announce[0]["verified"] is True
    # Fedify's peer is not a threaded server, so it gets the group's boost of the post.
    assert announce[0]["objectId"] == post_id
    assert peer.received()["rejected"] == []

    # The note itself resolves through Fedify at its id.
    note = (await peer.alookup(post_id))["summary"]
    assert note["attributedTo"] == [f"{a.base_url}/users/alice"]
    assert "Hello Fedify" in note["content"]

    # Leaving: Fedify's Undo(Follow) ends the membership.
    await peer.aunfollow(group)

    async def left() -> bool:
        rows = await a.query(
            "SELECT 1 FROM follows f JOIN actors x ON x.id = f.follower_id WHERE x.uri = :uri",
            uri=peer.actor_id,
        )
        return rows == []

    await eventually(left, what="membership ended")
