"""The domain policy holds at every gate: inbox, delivery, outbound fetches, signed fetches.

A suspended domain is refused before any key is fetched and before anything is sent; the
FakeRemote counts every actor fetch and records every POST, so a leak shows.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from fedi.activitypub.httpsig import sign_request
from fedi.actors.local import create_group, create_user
from fedi.delivery.enqueue import enqueue
from fedi.errors import FetchError, SignatureError
from fedi.moderation.blocks import allow
from fedi.moderation.policy import DomainPolicy, mark_changed
from fedi.store.models import Actor, Delivery, DomainBlock, Follow, InboxItem
from tests.moderation.conftest import block, federation_mode
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

GROUP = f"{BASE_URL}/groups/cats"
INBOX = f"{GROUP}/inbox"


def follow(remote: FakeRemote, suffix: str = "1") -> dict[str, Any]:
    return {"@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{remote.base_url}/activities/follow-{suffix}", "type": "Follow",
            "actor": remote.actors["alice"].uri, "object": GROUP}


async def post_follow(fedi: InProcess, remote: FakeRemote, suffix: str = "1") -> Any:
    raw = json.dumps(follow(remote, suffix)).encode()
    headers = remote.signed(remote.actors["alice"], INBOX, raw)
    return await fedi.http.post(INBOX, content=raw, headers=headers)


async def stored(fedi: InProcess) -> int:
    async with fedi.services.sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(InboxItem))).scalar_one()


def remote_domain(remote: FakeRemote) -> str:
    return f"127.0.0.1:{remote.port}"


@pytest.mark.parametrize(
    "typed",
    ["{domain}", "127.0.0.1.:{port}", "127.0.0.1"],
    ids=["host:port", "trailing dot", "bare host covers every port"],
)
async def test_inbox_refuses_a_suspended_domain_before_fetching_any_key(
    fedi: InProcess, remote: FakeRemote, typed: str
) -> None:
    await block(fedi, typed.format(domain=remote_domain(remote), port=remote.port))
    response = await post_follow(fedi, remote)
    assert response.status_code == 403
    assert "suspended" in response.json()["error"]
    assert remote.fetches["alice"] == 0  # the key was never fetched
    assert await stored(fedi) == 0


async def test_a_block_on_another_port_does_not_touch_this_peer(
    fedi: InProcess, remote: FakeRemote
) -> None:
    await block(fedi, f"127.0.0.1:{remote.port + 1 if remote.port < 65535 else 1}")
    assert (await post_follow(fedi, remote)).status_code == 202


async def test_silenced_domain_may_still_talk(fedi: InProcess, remote: FakeRemote) -> None:
    await block(fedi, remote_domain(remote), "silence")
    assert (await post_follow(fedi, remote)).status_code == 202
    assert await fedi.services.domain_policy.is_silenced(remote_domain(remote))
    assert not await fedi.services.domain_policy.is_silenced("elsewhere.example")


async def test_allowlist_mode_refuses_unlisted_and_accepts_listed(
    fedi: InProcess, remote: FakeRemote
) -> None:
    await federation_mode(fedi, "allowlist")
    response = await post_follow(fedi, remote, "1")
    assert response.status_code == 403
    assert "not on this instance's list" in response.json()["error"]
    assert remote.fetches["alice"] == 0

    async with fedi.services.sessionmaker() as session, session.begin():
        await allow(session, remote_domain(remote), who="test")
    fedi.services.domain_policy.invalidate()
    assert (await post_follow(fedi, remote, "2")).status_code == 202


async def _queue_to_remote(fedi: InProcess, remote: FakeRemote, label: str) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        group = (await session.execute(select(Actor).where(Actor.uri == GROUP))).scalar_one()
        activity = {"id": f"{BASE_URL}/activities/{label}", "type": "Announce",
                    "actor": GROUP, "object": f"{BASE_URL}/posts/{label}"}
        await enqueue(session, group, activity, [remote.shared_inbox])


async def _delivery_states(fedi: InProcess) -> list[str]:
    async with fedi.services.sessionmaker() as session:
        return list((await session.execute(select(Delivery.state).order_by(Delivery.id))).scalars())


async def test_suspending_drops_queued_deliveries_and_sends_nothing(
    fedi: InProcess, remote: FakeRemote
) -> None:
    await _queue_to_remote(fedi, remote, "a1")
    await _queue_to_remote(fedi, remote, "a2")
    assert await _delivery_states(fedi) == ["pending", "pending"]
    await block(fedi, remote_domain(remote))
    assert await _delivery_states(fedi) == ["dropped", "dropped"]
    await fedi.services.delivery.run_once()
    assert remote.posts == []


async def test_delivery_worker_drops_rows_the_policy_refuses(
    fedi: InProcess, remote: FakeRemote
) -> None:
    """Rows still queued when the policy changes without a suspension (allowlist mode)."""
    await _queue_to_remote(fedi, remote, "b1")
    await federation_mode(fedi, "allowlist")
    assert await _delivery_states(fedi) == ["pending"]
    assert await fedi.services.delivery.run_once() == 1
    assert await _delivery_states(fedi) == ["dropped"]
    assert remote.posts == []


async def test_our_fetches_to_a_suspended_domain_are_refused_without_connecting(
    fedi: InProcess, remote: FakeRemote
) -> None:
    await block(fedi, remote_domain(remote))
    alice = remote.actors["alice"]
    resolver = fedi.services.resolver
    async with fedi.services.sessionmaker() as session:
        with pytest.raises(FetchError, match="suspended"):
            await resolver.actor(session, alice.uri)
        with pytest.raises(FetchError, match="suspended"):
            await resolver.resolve_handle(session, f"@alice@{remote_domain(remote)}")
        assert await resolver.software(session, remote_domain(remote)) is None
    with pytest.raises(FetchError, match="suspended"):
        await resolver.key(alice.key_id)
    with pytest.raises(FetchError, match="suspended"):
        await resolver.fetch(f"{alice.uri}/outbox")
    assert sum(remote.fetches.values()) == 0


async def test_signed_fetches_from_a_suspended_domain_are_refused(
    fedi: InProcess, remote: FakeRemote
) -> None:
    await block(fedi, remote_domain(remote))
    url = f"{GROUP}"
    headers = sign_request("cavage", "GET", url, {"Accept": "application/activity+json"}, None,
                           remote.actors["alice"].key)
    lowered = {k.lower(): v for k, v in headers.items()}
    with pytest.raises(SignatureError, match="suspended"):
        await fedi.services.fetch_verifier.signer("GET", url, lowered)
    assert remote.fetches["alice"] == 0


async def test_a_change_from_another_process_is_seen_within_the_check_interval(
    fedi: InProcess,
) -> None:
    ticks = [0.0]
    policy = DomainPolicy(fedi.services.sessionmaker, check_interval=1.0,
                          monotonic=lambda: ticks[0])
    assert await policy.refusal("late.example") is None
    async with fedi.services.sessionmaker() as session, session.begin():
        session.add(DomainBlock(domain="late.example", severity="suspend"))
        await mark_changed(session)
    ticks[0] = 0.5
    assert await policy.refusal("late.example") is None  # cached
    ticks[0] = 1.5
    assert await policy.refusal("late.example") is not None


async def test_own_domain_is_never_refused(fedi: InProcess) -> None:
    await federation_mode(fedi, "allowlist")
    assert await fedi.services.domain_policy.refusal("fedi.test") is None
    assert await fedi.services.domain_policy.refusal("FEDI.test.") is None
    assert await fedi.services.domain_policy.refusal("x@evil.example") is not None


async def test_activity_queued_before_a_block_is_not_processed_after_it(
    database_url: str,
) -> None:
    """A domain blocked while its activity waits in the inbox queue: the worker drops it."""
    remote = FakeRemote()
    actor = remote.add_actor("late")
    await remote.start()
    try:
        async with running_app(database_url) as fedi:
            async with fedi.services.sessionmaker() as session, session.begin():
                await create_user(session, fedi.services.urls, "owner")
                await create_group(session, fedi.services.urls, "g", owner="owner")
            inbox = f"{BASE_URL}/groups/g/inbox"
            body = json.dumps({"id": f"{actor.uri}/f", "type": "Follow", "actor": actor.uri,
                               "object": f"{BASE_URL}/groups/g"}).encode()
            response = await fedi.http.post(inbox, content=body,
                                            headers=remote.signed(actor, inbox, body))
            assert response.status_code == 202
            blocked = f"127.0.0.1:{remote.port}"

            async def suspended(host: str) -> str | None:
                return "suspended" if host == blocked else None

            fedi.services.processor._host_policy = suspended
            await fedi.services.processor.run_once()
            async with fedi.services.sessionmaker() as session:
                item = (await session.execute(select(InboxItem))).scalar_one()
                assert item.state == "done" and item.error == "refused: suspended"
                assert (await session.execute(select(Follow))).first() is None
    finally:
        await remote.stop()
