"""Relationships: block and mute (the person's own filter, listed under /blocks and /mutes),
following a person here, and following a group on another server with the same Follow the
web's join button sends."""

from __future__ import annotations

import json

from sqlalchemy import select

from fedi.store.models import Actor, Follow, OutboundActivity, PersonRelation
from tests.api.support import api_app, client, make_group, make_user, token_for
from tests.support.remote import FakeRemote


async def test_block_and_mute_show_in_the_relationship_and_the_lists(database_url: str
                                                                     ) -> None:
    async with api_app(database_url) as fedi:
        eve = await make_user(fedi, "eve")
        bob = await make_user(fedi, "bob")
        mia = await make_user(fedi, "mia")
        token = await token_for(fedi, "mia")
        async with client(fedi, token) as http:
            blocked = await http.post(f"/api/v1/accounts/{eve.id}/block")
            assert blocked.status_code == 200
            assert blocked.json()["blocking"] is True and blocked.json()["muting"] is False
            muted = await http.post(f"/api/v1/accounts/{bob.id}/mute",
                                    json={"notifications": False})
            assert muted.json()["muting"] is True
            assert muted.json()["muting_notifications"] is False
            assert [a["username"] for a in (await http.get("/api/v1/blocks")).json()] == ["eve"]
            assert [a["username"] for a in (await http.get("/api/v1/mutes")).json()] == ["bob"]
            both = (await http.get("/api/v1/accounts/relationships",
                                   params=[("id[]", str(eve.id)), ("id[]", str(bob.id))])
                    ).json()
            assert [(r["blocking"], r["muting"]) for r in both] == [(True, False),
                                                                    (False, True)]
            assert (await http.post(f"/api/v1/accounts/{mia.id}/block")).status_code == 422
            assert (await http.post(f"/api/v1/accounts/{bob.id}/mute",
                                    json={"notifications": "maybe"})).status_code == 422
            lifted = await http.post(f"/api/v1/accounts/{eve.id}/unblock")
            assert lifted.json()["blocking"] is False
            assert (await http.get("/api/v1/blocks")).json() == []
            await http.post(f"/api/v1/accounts/{bob.id}/unmute")
            assert (await http.get("/api/v1/mutes")).json() == []
        async with client(fedi, await token_for(fedi, "eve")) as http:
            await http.post(f"/api/v1/accounts/{mia.id}/block")
        async with client(fedi, token) as http:
            seen = (await http.get("/api/v1/accounts/relationships",
                                   params={"id[]": str(eve.id)})).json()[0]
            assert seen["blocked_by"] is True and seen["blocking"] is False
        async with fedi.services.sessionmaker() as session:
            rows = (await session.execute(select(PersonRelation.actor_id))).scalars().all()
        assert rows == [eve.id]


async def test_a_token_without_the_scope_cannot_block(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        eve = await make_user(fedi, "eve")
        async with client(fedi, await token_for(fedi, "mia", "read")) as http:
            assert (await http.post(f"/api/v1/accounts/{eve.id}/block")).status_code == 403
            assert (await http.get("/api/v1/blocks")).status_code == 200
        async with client(fedi, await token_for(fedi, "mia", "follow")) as http:
            assert (await http.post(f"/api/v1/accounts/{eve.id}/block")).status_code == 200


async def test_following_a_person_here_and_being_followed(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        await make_group(fedi, "park", "owner")
        bob = await make_user(fedi, "bob")
        mia = await make_user(fedi, "mia")
        async with client(fedi, await token_for(fedi, "mia")) as http:
            followed = await http.post(f"/api/v1/accounts/{bob.id}/follow")
            assert followed.json()["following"] is True
            assert (await http.post(f"/api/v1/accounts/{mia.id}/follow")).status_code == 422
            bob_now = (await http.get(f"/api/v1/accounts/{bob.id}")).json()
            assert bob_now["followers_count"] == 1
        async with client(fedi, await token_for(fedi, "bob")) as http:
            mine = (await http.get("/api/v1/accounts/relationships",
                                   params={"id[]": str(mia.id)})).json()[0]
            assert mine["followed_by"] is True and mine["following"] is False
            followers = (await http.get(f"/api/v1/accounts/{bob.id}/followers")).json()
            assert [a["username"] for a in followers] == ["mia"]
        async with client(fedi, await token_for(fedi, "mia")) as http:
            await http.post(f"/api/v1/accounts/{bob.id}/unfollow")
            assert (await http.get(f"/api/v1/accounts/{bob.id}")).json()["followers_count"] == 0


async def test_following_a_remote_group_sends_a_follow_and_waits(database_url: str) -> None:
    remote = FakeRemote()
    lemmings = remote.add_actor("lemmings")
    remote.actor_types["lemmings"] = "Group"
    await remote.start()
    try:
        async with api_app(database_url) as fedi:
            mia = await make_user(fedi, "mia")
            async with client(fedi, await token_for(fedi, "mia")) as http:
                found = await http.get("/api/v2/search", params={
                    "q": f"@lemmings@127.0.0.1:{remote.port}", "resolve": "true",
                    "type": "accounts"})
                group = found.json()["accounts"][0]
                assert group["group"] is True
                assert group["acct"] == f"lemmings@127.0.0.1:{remote.port}"
                asked = await http.post(f"/api/v1/accounts/{group['id']}/follow")
                assert asked.status_code == 200
                assert asked.json()["requested"] is True
                assert asked.json()["following"] is False
            async with fedi.services.sessionmaker() as session:
                target = (await session.execute(
                    select(Actor).where(Actor.uri == lemmings.uri))).scalar_one()
                row = (await session.execute(select(Follow).where(
                    Follow.follower_id == mia.id, Follow.target_id == target.id))
                ).scalar_one()
                sent = [json.loads(a.body) for a in (await session.execute(
                    select(OutboundActivity).where(OutboundActivity.actor_id == mia.id))
                ).scalars()]
            assert row.state == "pending"
            assert [(a["type"], a["object"]) for a in sent] == [("Follow", lemmings.uri)]
            async with client(fedi, await token_for(fedi, "mia")) as http:
                left = await http.post(f"/api/v1/accounts/{group['id']}/unfollow")
                assert left.json()["requested"] is False
            async with fedi.services.sessionmaker() as session:
                kinds = [json.loads(a.body)["type"] for a in (await session.execute(
                    select(OutboundActivity).where(OutboundActivity.actor_id == mia.id)
                    .order_by(OutboundActivity.id))).scalars()]
            assert kinds == ["Follow", "Undo"]
    finally:
        await remote.stop()
