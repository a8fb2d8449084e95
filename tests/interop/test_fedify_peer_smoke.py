"""Smoke test of the Fedify peer fixture itself, with no fedi code involved.

Two Fedify peers follow each other's actor and exchange a Create, proving that
the peer starts, that Fedify verifies the other's signatures (RFC 9421 and
draft-cavage first knocks) and that the control API reports what happened.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .fedify import PUBLIC, FedifyPeer, FedifyPeerError, fedify_available

pytestmark = pytest.mark.interop


@pytest.fixture
def peers() -> Iterator[tuple[FedifyPeer, FedifyPeer]]:
    ok, why = fedify_available()
    if not ok:
        pytest.fail(f"Fedify peer is not installed: {why}")
    a, b = FedifyPeer(), FedifyPeer()
    try:
        a.start(first_knock="rfc9421")
        b.start(first_knock="cavage")
        yield a, b
    finally:
        a.stop()
        b.stop()


async def test_two_fedify_peers_follow_and_deliver(peers: tuple[FedifyPeer, FedifyPeer]) -> None:
    a, b = peers
    assert a.health()["actor"] == a.actor_id
    assert (await b.ahealth())["firstKnock"] == "draft-cavage-http-signatures-12"

    # Fedify resolves and parses the other peer's actor, with both key kinds.
    looked_up = await a.alookup(b.actor_id)
    summary = looked_up["summary"]
    assert summary["type"] == "Person"
    assert summary["id"] == b.actor_id
    assert summary["inbox"] == b.inbox
    assert summary["sharedInbox"] == b.shared_inbox
    assert [k["id"] for k in summary["publicKeys"]] == [f"{b.actor_id}#main-key"]
    assert {k["algorithm"] for k in summary["assertionMethods"]} == {
        "RSASSA-PKCS1-v1_5",
        "Ed25519",
    }

    # WebFinger is served by Fedify.
    async with httpx.AsyncClient(trust_env=False) as client:
        jrd = (
            await client.get(
                f"{b.base_url}/.well-known/webfinger", params={"resource": f"acct:{b.handle}"}
            )
        ).json()
    assert {"rel": "self", "href": b.actor_id, "type": "application/activity+json"} in jrd["links"]

    # A follows B; B auto-accepts.
    follow = await a.afollow(b.actor_id)
    follow_record = await b.await_for_activity("Follow", lambda r: r["id"] == follow["followId"])
    assert follow_record["verified"] is True
    assert follow_record["actor"] == a.actor_id
    assert follow_record["objectId"] == b.actor_id
    accept = await a.await_for_activity("Accept", lambda r: r["objectId"] == follow["followId"])
    assert accept["actor"] == b.actor_id

    async def accepted_follows(_: object) -> list[dict[str, object]]:
        return [f for f in await a.afollowing() if f["state"] == "accepted"]

    following = await a.await_for(accepted_follows, timeout=5)
    assert following[0]["target"] == b.actor_id
    assert await b.afollowers() == [a.actor_id]

    # A signed its first knock with RFC 9421, B with draft-cavage; both were accepted.
    b_requests = (await b.areceived())["requests"]
    follow_post = next(r for r in b_requests if r["activityId"] == follow["followId"])
    assert follow_post["signatureScheme"] == "rfc9421"
    assert follow_post["keyId"] == f"{a.actor_id}#main-key"
    assert follow_post["status"] == 202
    assert "content-digest" in follow_post["headers"]
    a_requests = (await a.areceived())["requests"]
    accept_post = next(r for r in a_requests if r["activityId"] == accept["id"])
    assert accept_post["signatureScheme"] == "cavage"
    assert accept_post["keyId"] == f"{b.actor_id}#main-key"
    assert accept_post["status"] == 202
    assert "digest" in accept_post["headers"]

    # B posts publicly to its followers: A gets a verified Create.
    created = await b.acreate_note(
        "<p>Hello, followers</p>", to=[PUBLIC], cc=[b.followers_id], name=None
    )
    assert created["deliveredTo"] == [a.inbox]
    create = await a.await_for_activity("Create", lambda r: r["objectId"] == created["id"])
    assert create["verified"] is True
    assert create["object"]["content"] == "<p>Hello, followers</p>"
    assert create["object"]["attributedTo"] == b.actor_id

    # The note is dereferenceable from B, and Fedify on A can parse it.
    note = (await a.alookup(created["id"]))["summary"]
    assert note["type"] == "Note"
    assert note["attributedTo"] == [b.actor_id]

    # A replies directly to B, mentioning it, as a titled Page.
    reply = await a.acreate_note(
        "<p>@alice hi back</p>",
        to=[b.actor_id],
        in_reply_to=created["id"],
        mentions=[b.actor_id],
        name="A title",
        object_type="Page",
    )
    page = await b.await_for_activity("Create", lambda r: r["objectId"] == reply["id"])
    assert page["object"]["type"] == "Page"
    assert page["object"]["name"] == "A title"
    assert page["object"]["inReplyTo"] == created["id"]
    tag = page["object"]["tag"]
    tags = tag if isinstance(tag, list) else [tag]
    assert {"type": "Mention", "href": b.actor_id, "name": f"@{b.handle}"} in tags

    # Any other activity can be sent too.
    like = await a.asend({"type": "Like", "object": created["id"]}, to=[b.actor_id])
    liked = await b.await_for_activity("Like", lambda r: r["id"] == like["activityId"])
    assert liked["objectId"] == created["id"]

    # Unsigned deliveries are refused (401) and show up as rejected.
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(
            a.inbox,
            json={
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": f"{b.base_url}/activities/forged",
                "type": "Create",
                "actor": b.actor_id,
                "object": {
                    "id": f"{b.base_url}/notes/forged",
                    "type": "Note",
                    "attributedTo": b.actor_id,
                    "content": "forged",
                },
            },
            headers={"Content-Type": "application/activity+json"},
        )
    assert response.status_code == 401
    snapshot = await a.areceived()
    assert [r["reason"] for r in snapshot["rejected"]] == ["noSignature"]
    assert all(r["id"] != f"{b.base_url}/activities/forged" for r in snapshot["activities"])

    # Undo(Follow) removes A from B's followers.
    await a.aunfollow(b.actor_id)
    await b.await_for_activity("Undo")
    assert await b.afollowers() == []
    assert await a.afollowing() == []

    # Control errors surface as FedifyPeerError with the HTTP status.
    with pytest.raises(FedifyPeerError) as missing:
        await a.afollow(f"{b.base_url}/users/nobody")
    assert missing.value.status == 404
