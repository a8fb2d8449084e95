"""The inbox: verify, store durably, answer 202; refuse what cannot be verified.

Covers SECURITY 4, 6, 9 and 13 end to end through the real app.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from fedi.actors.local import create_group, create_user
from fedi.store.models import Delivery, Follow, InboxItem
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

GROUP = f"{BASE_URL}/groups/cats"
INBOX = f"{GROUP}/inbox"


@pytest.fixture
async def remote() -> AsyncIterator[FakeRemote]:
    server = FakeRemote()
    server.add_actor("alice", key_index=0)
    server.add_actor("mallory", key_index=1)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[InProcess]:
    async with running_app(database_url) as running:
        async with running.services.sessionmaker() as session, session.begin():
            await create_user(session, running.services.urls, "owner")
            await create_group(session, running.services.urls, "cats", owner="owner")
        yield running


def follow(remote: FakeRemote, name: str = "alice", suffix: str = "1") -> dict[str, Any]:
    actor = remote.actors[name].uri
    return {"@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{remote.base_url}/activities/follow-{suffix}", "type": "Follow",
            "actor": actor, "object": GROUP}


async def post(
    fedi: InProcess, remote: FakeRemote, activity: dict[str, Any], *, signer: str = "alice",
    scheme: str = "cavage", url: str = INBOX, body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    raw = json.dumps(activity).encode()
    signed = remote.signed(remote.actors[signer], url, raw, scheme=scheme)  # type: ignore[arg-type]
    signed.update(headers or {})
    return await fedi.http.post(url, content=body if body is not None else raw, headers=signed)


async def stored(fedi: InProcess) -> int:
    async with fedi.services.sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(InboxItem))).scalar_one()


@pytest.mark.parametrize("scheme", ["cavage", "rfc9421"])
async def test_signed_follow_is_stored_then_accepted(
    fedi: InProcess, remote: FakeRemote, scheme: str
) -> None:
    response = await post(fedi, remote, follow(remote), scheme=scheme)
    assert response.status_code == 202, response.text
    assert await stored(fedi) == 1
    # Nothing happens in the request path: processing is the worker's job.
    async with fedi.services.sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Follow))).scalar_one() == 0

    assert await fedi.services.processor.run_once() == 1
    async with fedi.services.sessionmaker() as session:
        membership = (await session.execute(select(Follow))).scalar_one()
        assert membership.state == "accepted"
        delivery = (await session.execute(select(Delivery))).scalar_one()
        assert delivery.inbox_url == remote.actors["alice"].inbox

    await fedi.services.delivery.run_once()
    accept = remote.posts[-1].json
    assert accept["type"] == "Accept" and accept["actor"] == GROUP
    assert accept["object"]["id"] == follow(remote)["id"]


async def test_shared_inbox_accepts_too(fedi: InProcess, remote: FakeRemote) -> None:
    response = await post(fedi, remote, follow(remote), url=f"{BASE_URL}/inbox")
    assert response.status_code == 202, response.text


async def test_unsigned_post_is_refused_and_not_stored(fedi: InProcess, remote: FakeRemote) -> None:
    response = await fedi.http.post(
        INBOX, content=json.dumps(follow(remote)),
        headers={"Content-Type": "application/activity+json"},
    )
    assert response.status_code == 401
    assert "signature" in response.json()["error"].lower()
    assert await stored(fedi) == 0


async def test_key_of_another_actor_is_refused(fedi: InProcess, remote: FakeRemote) -> None:
    """SECURITY 4: mallory signs an activity that claims to be alice's."""
    response = await post(fedi, remote, follow(remote, "alice"), signer="mallory")
    assert response.status_code == 401
    assert "signed by" in response.json()["error"]
    assert await stored(fedi) == 0


async def test_activity_id_on_another_host_is_refused(fedi: InProcess, remote: FakeRemote) -> None:
    """SECURITY 4: the activity id's host must be the actor's host."""
    activity = follow(remote)
    activity["id"] = "http://127.0.0.2:9/activities/x"
    response = await post(fedi, remote, activity)
    assert response.status_code == 400
    assert "host" in response.json()["error"]
    assert await stored(fedi) == 0


async def test_tampered_body_is_refused(fedi: InProcess, remote: FakeRemote) -> None:
    """SECURITY 6: the digest must match the body that arrived."""
    original = follow(remote)
    tampered = json.dumps({**original, "object": f"{BASE_URL}/groups/other"}).encode()
    for scheme in ("cavage", "rfc9421"):
        response = await post(fedi, remote, original, body=tampered, scheme=scheme)
        assert response.status_code == 401
        assert "digest" in response.json()["error"].lower()
    assert await stored(fedi) == 0


async def test_signature_for_another_host_is_refused(fedi: InProcess, remote: FakeRemote) -> None:
    """A signature made for another server cannot be replayed at ours."""
    raw = json.dumps(follow(remote)).encode()
    other = "http://elsewhere.test/groups/cats/inbox"
    headers = remote.signed(remote.actors["alice"], other, raw)
    response = await fedi.http.post(INBOX, content=raw, headers=headers)
    assert response.status_code == 401
    assert await stored(fedi) == 0


async def test_duplicate_activity_is_stored_and_processed_once(
    fedi: InProcess, remote: FakeRemote
) -> None:
    for _ in range(3):
        assert (await post(fedi, remote, follow(remote))).status_code == 202
    assert await stored(fedi) == 1
    assert await fedi.services.processor.run_once() == 1
    assert await fedi.services.processor.run_once() == 0
    async with fedi.services.sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Delivery))).scalar_one() == 1


async def test_oversized_body_is_refused(fedi: InProcess, remote: FakeRemote) -> None:
    """SECURITY 13: bodies are capped while streaming."""
    activity = {**follow(remote), "padding": "x" * (fedi.settings.max_inbox_bytes + 1)}
    response = await post(fedi, remote, activity)
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * (fedi.settings.max_inbox_bytes // 2)

    # Without Content-Length the cap still holds.
    response = await fedi.http.post(INBOX, content=chunks(), headers={"Signature": "x"})
    assert response.status_code == 413
    assert await stored(fedi) == 0


async def test_malformed_json_gets_a_reason(fedi: InProcess, remote: FakeRemote) -> None:
    raw = b"{not json"
    headers = remote.signed(remote.actors["alice"], INBOX, raw)
    response = await fedi.http.post(INBOX, content=raw, headers=headers)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


async def test_rotated_key_is_refetched_once_then_rate_limited(
    fedi: InProcess, remote: FakeRemote
) -> None:
    """SECURITY 9: a failed verify refetches the key once; a flood does not refetch again."""
    assert (await post(fedi, remote, follow(remote, suffix="1"))).status_code == 202
    assert remote.fetches["alice"] == 1

    # alice rotates her key: the cached key fails, one refetch finds the new one.
    rotated = remote.add_actor("alice", key_index=2)
    assert (await post(fedi, remote, follow(remote, suffix="2"))).status_code == 202
    assert remote.fetches["alice"] == 2

    # A burst of bad signatures (mallory's key under alice's key id) is refused without refetching.
    bad_key = remote.actors["mallory"].key
    for attempt in range(5):
        raw = json.dumps(follow(remote, suffix=f"bad{attempt}")).encode()
        forged = type(bad_key)(rotated.key_id, bad_key.private_pem)
        headers = remote.signed(rotated, INBOX, raw, key=forged)
        assert (await fedi.http.post(INBOX, content=raw, headers=headers)).status_code == 401
    assert remote.fetches["alice"] == 2


async def test_delete_of_a_gone_actor_is_acknowledged_without_storing(
    fedi: InProcess, remote: FakeRemote
) -> None:
    gone = remote.add_actor("gone", key_index=1)
    remote.actors.pop("gone")  # its actor document now answers 410
    activity = {"id": f"{gone.uri}#delete", "type": "Delete", "actor": gone.uri, "object": gone.uri}
    raw = json.dumps(activity).encode()
    response = await fedi.http.post(INBOX, content=raw, headers=remote.signed(gone, INBOX, raw))
    assert response.status_code == 202
    assert await stored(fedi) == 0


async def test_a_burst_from_an_unknown_actor_fetches_its_key_once(
    fedi: InProcess, remote: FakeRemote
) -> None:
    """Many first requests at once: one fetch, every one accepted (no insert race)."""
    original = remote._actor

    async def slow(request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.2)  # the first fetch is still running when the others arrive
        return await original(request)

    remote._actor = slow  # type: ignore[method-assign]
    await remote.stop()
    await remote.start()
    responses = await asyncio.gather(*(
        post(fedi, remote, follow(remote, suffix=f"burst{n}")) for n in range(20)
    ))
    assert [r.status_code for r in responses] == [202] * 20
    assert remote.fetches["alice"] == 1
    assert await stored(fedi) == 20
