"""RFC 9421 `ed25519` signatures between fedi and a real Fedify 2.3.6 peer on loopback.

The peer publishes an Ed25519 Multikey (FEP-521a `assertionMethod`), so fedi signs what it
delivers there with its own Ed25519 key; Fedify's inbox verifies it with its own code, fetching
the key document the keyid names. The other way, the peer signs with its Ed25519 key (the
signature checked by Fedify's own verifier before it is sent) and fedi verifies it with the
peer's Multikey; a body changed after signing is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.instance import FediInstance, eventually

from .fedify import FedifyPeer, fedify_available

pytestmark = [pytest.mark.interop, pytest.mark.federation]


@pytest.fixture
def peer() -> Iterator[FedifyPeer]:
    ok, why = fedify_available()
    if not ok:
        pytest.fail(f"the Fedify peer is not installed: {why}")
    started = FedifyPeer()
    try:
        started.start(first_knock="rfc9421")
        yield started
    finally:
        started.stop()


def posts_from(peer: FedifyPeer, base_url: str) -> list[dict[str, Any]]:
    """Inbox POSTs the peer got from fedi, with how they were signed and answered."""
    return [r for r in peer.received()["requests"]
            if r["inbox"] and r["headers"].get("host") == peer.base_url.split("://")[1]
            and str(r.get("keyId") or "").startswith(base_url)]


async def membership(a: FediInstance, actor: str) -> list[Any]:
    return await a.query(
        "SELECT f.state FROM follows f JOIN actors x ON x.id = f.follower_id WHERE x.uri = :u",
        u=actor,
    )


async def test_fedify_verifies_fedis_ed25519_deliveries(
    instances: list[FediInstance], peer: FedifyPeer
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    a.cli("create-group", "cats", "--owner", "alice")
    a.start()
    group = f"{a.base_url}/groups/cats"

    await peer.afollow(group)
    await eventually(lambda: [f for f in peer.following() if f["state"] == "accepted"],
                     what="Fedify verifies the group's Accept")
    a.cli("post", "--as", "alice", "--group", "cats", "Signed with Ed25519")
    await eventually(
        lambda: [x for x in peer.received()["activities"] if x["type"] == "Announce"],
        what="Fedify verifies the group's Announce",
    )

    posts = posts_from(peer, a.base_url)
    assert [p["activityType"] for p in posts] == ["Accept", "Announce"]
    for p in posts:
        # One knock each: Fedify accepted the Ed25519 signature, no RSA fallback was needed.
        assert p["status"] == 202, p
        assert p["signatureScheme"] == "rfc9421"
        assert p["algorithm"] == "ed25519"
        assert p["keyId"] == f"{group}/ed25519-key"
    received = peer.received()
    assert all(x["verified"] for x in received["activities"])
    assert received["rejected"] == []
    # Fedify found the key at the keyid: fedi's CryptographicKey document for it.
    fetched = [(r["method"], r["status"]) for r in received["outgoing"]
               if r["url"] == f"{group}/ed25519-key"]
    assert fetched and set(fetched) == {("GET", 200)}


async def test_fedi_verifies_fedifys_ed25519_signature(
    instances: list[FediInstance], peer: FedifyPeer
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    a.cli("create-group", "dogs", "--owner", "alice")
    a.start()
    group = f"{a.base_url}/groups/dogs"
    follow = {"type": "Follow", "object": group}

    # Changed after signing: fedi refuses it, and nothing is stored.
    forged = await peer.aed25519_send(
        f"{group}/inbox", {**follow, "id": f"{peer.base_url}/activities/{uuid.uuid4()}"},
        tamper=True,
    )
    assert forged["fedifyVerified"] is True  # the signature was good before the change
    assert forged["status"] == 401, forged
    assert "digest" in forged["body"].lower()

    sent = await peer.aed25519_send(f"{group}/inbox", follow)
    assert sent["fedifyVerified"] is True
    assert 'alg="ed25519"' in sent["signatureInput"]
    summary = (await peer.alookup(peer.actor_id))["summary"]
    assert sent["keyId"] in [k["id"] for k in summary["assertionMethods"]]
    assert sent["status"] == 202, sent
    assert await eventually(lambda: membership(a, peer.actor_id),
                            what="the Follow is processed") == [("accepted",)]
    stored = await a.query("SELECT activity_uri FROM inbox_items WHERE activity_uri = :u",
                           u=forged["activityId"])
    assert stored == []
