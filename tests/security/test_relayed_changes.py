"""Issue 12 item 1, SECURITY 19: a remote group cannot rewrite or delete posts it does not own.

A running fedi (V) has a local user, vic, who follows `evil`, a Group on a hostile server on
loopback. Evil signs its Announces with its own real key; what it wraps is judged as if it
came directly: a post of V's is changed only on V, a group relays changes only of posts in
that group, edits come from the post's origin, deletions stand only when the origin says
the post is gone, and an embedded post from a third host is fetched from its own id.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fedi.activitypub import integrity
from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC
from tests.support.instance import FediInstance, eventually
from tests.support.remote import FakeRemote, RemoteActor

pytestmark = pytest.mark.federation


@pytest.fixture
async def hostile() -> AsyncIterator[FakeRemote]:
    server = FakeRemote(actor_types={"evil": "Group"})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def origin() -> AsyncIterator[FakeRemote]:
    """A third server, home of olga, whose posts the hostile group tries to forge."""
    server = FakeRemote()
    await server.start()
    yield server
    await server.stop()


async def send(v: FediInstance, remote: FakeRemote, actor: RemoteActor, activity: dict[str, Any],
               inbox: str | None = None) -> str:
    """POST a signed activity to V; wait until V's worker has handled it."""
    activity = {"@context": AS_CONTEXT, "id": f"{actor.uri}/activities/{uuid.uuid4()}",
                "actor": actor.uri, **activity}
    url = inbox or f"{v.base_url}/inbox"
    body = json.dumps(activity).encode()
    async with httpx.AsyncClient() as http:
        answer = await http.post(url, content=body, headers=remote.signed(actor, url, body))
    assert answer.status_code == 202, answer.text
    await eventually(lambda: handled(v, activity["id"]), what=f"{activity['id']} handled")
    return str(activity["id"])


async def handled(v: FediInstance, activity_id: str) -> bool:
    rows = await v.query("SELECT state FROM inbox_items WHERE activity_uri = :u", u=activity_id)
    return bool(rows) and rows[0][0] != "new"


async def post_row(v: FediInstance, uri: str) -> Any:
    rows = await v.query(
        "SELECT p.content, p.deleted_at, g.uri FROM posts p JOIN actors g ON g.id = p.group_id "
        "WHERE p.uri = :u", u=uri)
    return rows[0] if rows else None


async def vic_follows(v: FediInstance, hostile: FakeRemote, evil: RemoteActor) -> None:
    # The CLI fetches evil's actor from this process's loop: run it beside the loop.
    await asyncio.to_thread(v.cli, "follow", "--as", "vic", evil.uri)
    follow = await eventually(
        lambda: next((p.json for p in hostile.posts if p.json.get("type") == "Follow"), None),
        what="vic's Follow at the hostile server")
    await send(v, hostile, evil, {"type": "Accept", "object": follow},
               inbox=f"{v.base_url}/users/vic/inbox")
    rows = await v.query("SELECT state FROM follows WHERE activity_uri = :u", u=follow["id"])
    assert rows == [("accepted",)]


@pytest.fixture
async def world(
    instances: list[FediInstance], hostile: FakeRemote, origin: FakeRemote
) -> AsyncIterator[tuple[FediInstance, RemoteActor, RemoteActor]]:
    v = instances[0]
    v.cli("create-user", "vic")
    v.cli("create-group", "club", "--owner", "vic")
    v.start()
    evil = hostile.add_actor("evil", key_index=0)
    olga = origin.add_actor("olga", key_index=1)
    await vic_follows(v, hostile, evil)
    yield v, evil, olga


def note(uri: str, author: str, content: str, to: list[str]) -> dict[str, Any]:
    return {"id": uri, "type": "Note", "attributedTo": author, "content": content, "to": to}


async def test_relayed_update_cannot_rewrite_a_local_post(
    world: tuple[FediInstance, RemoteActor, RemoteActor], hostile: FakeRemote,
) -> None:
    v, evil, _ = world
    secret = v.cli("post", "--as", "vic", "--group", "club", "--visibility", "members",
                   "Members only.").stdout.strip()
    vic = f"{v.base_url}/users/vic"
    forged = note(secret, vic, "<p>rewritten by evil</p>", [evil.uri])
    await send(v, hostile, evil, {"type": "Announce", "object": {
        "type": "Update", "actor": vic, "object": forged}})
    content, deleted_at, _ = await post_row(v, secret)
    assert "Members only." in content and "evil" not in content and deleted_at is None


async def test_relayed_delete_cannot_remove_a_local_post(
    world: tuple[FediInstance, RemoteActor, RemoteActor], hostile: FakeRemote,
) -> None:
    v, evil, _ = world
    secret = v.cli("post", "--as", "vic", "--group", "club", "--visibility", "members",
                   "Still here.").stdout.strip()
    vic = f"{v.base_url}/users/vic"
    await send(v, hostile, evil, {"type": "Announce", "object": {
        "type": "Delete", "actor": vic, "object": secret}})
    await send(v, hostile, evil, {"type": "Announce", "object": {
        "type": "Delete", "actor": vic, "object": {"id": secret, "type": "Tombstone"}}})
    content, deleted_at, _ = await post_row(v, secret)
    assert deleted_at is None and "Still here." in content


async def test_relayed_update_cannot_rewrite_another_servers_post(
    world: tuple[FediInstance, RemoteActor, RemoteActor], hostile: FakeRemote,
    origin: FakeRemote,
) -> None:
    """olga's post lives in V's club; evil (not its group) relays a forged edit, then the
    same forged edit arrives as if evil were relaying a post that is in evil."""
    v, evil, olga = world
    club = f"{v.base_url}/groups/club"
    await send(v, origin, olga, {"type": "Follow", "object": club},
               inbox=f"{club}/inbox")
    uri = f"{origin.base_url}/objects/o1"
    original = {**note(uri, olga.uri, "<p>olga's words</p>", [PUBLIC, club]),
                "audience": club}
    origin.objects["o1"] = original
    await send(v, origin, olga, {"type": "Create", "object": original, "to": [PUBLIC, club]},
               inbox=f"{club}/inbox")
    assert (await post_row(v, uri))[0] == "<p>olga's words</p>"

    forged = note(uri, olga.uri, "<p>rewritten by evil</p>", [evil.uri])
    await send(v, hostile, evil, {"type": "Announce", "object": {
        "type": "Update", "actor": olga.uri, "object": forged}})
    await send(v, hostile, evil, {"type": "Announce", "object": {
        "type": "Delete", "actor": olga.uri, "object": uri}})
    content, deleted_at, group = await post_row(v, uri)
    assert (content, deleted_at, group) == ("<p>olga's words</p>", None, club)


async def test_embedded_third_party_post_is_fetched_from_its_origin(
    world: tuple[FediInstance, RemoteActor, RemoteActor], hostile: FakeRemote,
    origin: FakeRemote,
) -> None:
    """evil embeds a post in olga's name that olga's server does not serve: not stored.
    olga's real post (and her real Create, later) are then taken as she wrote them."""
    v, evil, olga = world
    uri = f"{origin.base_url}/objects/o2"
    forged = note(uri, olga.uri, "<p>words olga never wrote</p>", [evil.uri])
    await send(v, hostile, evil, {"type": "Announce", "object": {
        "type": "Create", "actor": olga.uri, "object": forged}})
    assert await post_row(v, uri) is None
    assert origin.fetches["objects/o2"] == 1  # it asked the origin, which has no such post

    # Once olga's server serves the real post, an Announce of it stores the real words.
    club = f"{v.base_url}/groups/club"
    real = {**note(uri, olga.uri, "<p>olga's real words</p>", [PUBLIC, club]), "audience": club}
    await send(v, origin, olga, {"type": "Follow", "object": club}, inbox=f"{club}/inbox")
    origin.objects["o2"] = real
    await send(v, origin, olga, {"type": "Create", "object": real, "to": [PUBLIC, club]},
               inbox=f"{club}/inbox")
    content, deleted_at, group = await post_row(v, uri)
    assert (content, deleted_at, group) == ("<p>olga's real words</p>", None, club)


async def test_the_group_still_relays_its_own_members_changes(
    world: tuple[FediInstance, RemoteActor, RemoteActor], hostile: FakeRemote,
) -> None:
    """The rules refuse only what is not the relay's to say: a post on the group's own host
    is taken as embedded, edited by its author's Update, and deleted when its origin says
    it is gone."""
    v, evil, _ = world
    eve = hostile.add_actor("eve", key_index=1)
    uri = f"{hostile.base_url}/objects/e1"
    first = note(uri, eve.uri, "<p>first</p>", [PUBLIC, evil.uri])
    await send(v, hostile, evil, {"type": "Announce", "to": [PUBLIC], "object": {
        "type": "Create", "actor": eve.uri, "object": first}})
    assert (await post_row(v, uri))[:2] == ("<p>first</p>", None)

    second = {**first, "content": "<p>second</p>"}
    await send(v, hostile, evil, {"type": "Announce", "object": {
        "type": "Update", "actor": eve.uri, "object": second}})
    assert (await post_row(v, uri))[0] == "<p>second</p>"

    # Still served by its origin: a relayed Delete does not stand.
    hostile.objects["e1"] = second
    await send(v, hostile, evil, {"type": "Announce", "object": {
        "type": "Delete", "actor": eve.uri, "object": uri}})
    assert (await post_row(v, uri))[1] is None
    # Gone at its origin (404 for a public post): the relayed Delete stands.
    del hostile.objects["e1"]
    await send(v, hostile, evil, {"type": "Announce", "object": {
        "type": "Delete", "actor": eve.uri, "object": uri}})
    assert (await post_row(v, uri))[1] is not None


async def test_embedded_post_with_its_authors_proof_is_taken_and_a_forged_one_is_not(
    world: tuple[FediInstance, RemoteActor, RemoteActor], hostile: FakeRemote,
    origin: FakeRemote,
) -> None:
    """A members-only post cannot be fetched from its origin by a server outside its
    audience; its author's integrity proof (FEP-8b32) stands in for the fetch. The relay
    cannot change a word of it, nor sign in the author's name with a key of its own."""
    v, evil, olga = world
    private_pem, multibase = integrity.generate_ed25519_keypair()
    origin.assertion_keys["olga"] = (private_pem, multibase)
    key_id = f"{olga.uri}#ed25519-key"

    def create(n: str, content: str, pem: str = private_pem) -> dict[str, Any]:
        return integrity.sign({
            "@context": [AS_CONTEXT, integrity.DATA_INTEGRITY_CONTEXT],
            "id": f"{olga.uri}/activities/{n}", "type": "Create", "actor": olga.uri,
            "to": [evil.uri],
            "object": note(f"{origin.base_url}/objects/{n}", olga.uri, content, [evil.uri]),
        }, pem, key_id)

    signed = create("p1", "<p>for the members</p>")
    await send(v, hostile, evil, {"type": "Announce", "object": signed, "to": [evil.uri]})
    assert (await post_row(v, f"{origin.base_url}/objects/p1"))[:2] == (
        "<p>for the members</p>", None)
    assert origin.fetches["objects/p1"] == 0  # taken on olga's proof, not fetched

    tampered = create("p2", "<p>what olga wrote</p>")
    tampered["object"]["content"] = "<p>what evil wants her to say</p>"
    await send(v, hostile, evil, {"type": "Announce", "object": tampered, "to": [evil.uri]})
    assert await post_row(v, f"{origin.base_url}/objects/p2") is None

    evils_key, _ = integrity.generate_ed25519_keypair()
    forged = create("p3", "<p>signed with another key</p>", pem=evils_key)
    await send(v, hostile, evil, {"type": "Announce", "object": forged, "to": [evil.uri]})
    assert await post_row(v, f"{origin.base_url}/objects/p3") is None
