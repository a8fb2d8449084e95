"""Joining groups from a Mastodon app: follow an open group (a member at once), an approval
group (a request the moderator sees under follow_requests and authorizes or rejects with
the use case `fedi mod approve|reject` calls), and unfollow to leave."""

from __future__ import annotations

from sqlalchemy import select

from fedi.store.models import AuditEntry, Follow, Notification
from tests.api.support import api_app, client, make_group, make_user, token_for


async def _follow_state(fedi: object, follower_id: int, target_id: int) -> str | None:
    async with fedi.services.sessionmaker() as session:  # type: ignore[attr-defined]
        return (await session.execute(select(Follow.state).where(
            Follow.follower_id == follower_id, Follow.target_id == target_id))
        ).scalar_one_or_none()


async def test_following_an_open_group_joins_it_and_unfollowing_leaves(database_url: str
                                                                       ) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        park = await make_group(fedi, "park", "owner")
        mia = await make_user(fedi, "mia")
        token = await token_for(fedi, "mia")
        async with client(fedi, token) as http:
            joined = await http.post(f"/api/v1/accounts/{park.id}/follow")
            assert joined.status_code == 200, joined.text
            assert joined.json()["following"] is True
            assert joined.json()["requested"] is False
            assert await _follow_state(fedi, mia.id, park.id) == "accepted"
            again = await http.post(f"/api/v1/accounts/{park.id}/follow")
            assert again.json()["following"] is True  # idempotent
            listed = (await http.get("/api/v1/accounts/relationships",
                                     params={"id[]": [str(park.id), "99999"]})).json()
            assert [r["id"] for r in listed] == [str(park.id)]
            assert listed[0]["following"] is True
            left = await http.post(f"/api/v1/accounts/{park.id}/unfollow")
            assert left.json()["following"] is False
            assert await _follow_state(fedi, mia.id, park.id) is None
            assert (await http.post("/api/v1/accounts/99999/follow")).status_code == 404


async def test_an_approval_group_answers_with_a_request_its_moderator_authorizes(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        owner = await make_user(fedi, "owner")
        garden = await make_group(fedi, "garden", "owner", join_policy="approval")
        club = await make_group(fedi, "club", "owner", join_policy="approval")
        await make_user(fedi, "other")
        elsewhere = await make_group(fedi, "elsewhere", "other", join_policy="approval")
        mia = await make_user(fedi, "mia")
        mia_token = await token_for(fedi, "mia")
        owner_token = await token_for(fedi, "owner")
        async with client(fedi, mia_token) as http:
            for group in (garden, club, elsewhere):
                asked = await http.post(f"/api/v1/accounts/{group.id}/follow")
                assert asked.status_code == 200
                assert asked.json()["requested"] is True
                assert asked.json()["following"] is False
            # Not a moderator: nothing to decide.
            assert (await http.get("/api/v1/follow_requests")).json() == []
            refused = await http.post(f"/api/v1/follow_requests/{owner.id}/authorize")
            assert refused.status_code == 404
        async with client(fedi, owner_token) as http:
            me = (await http.get("/api/v1/accounts/verify_credentials")).json()
            assert me["source"]["follow_requests_count"] == 2
            waiting = (await http.get("/api/v1/follow_requests")).json()
            assert [a["id"] for a in waiting] == [str(mia.id)]  # once for two groups
            decided = await http.post(f"/api/v1/follow_requests/{mia.id}/authorize")
            assert decided.status_code == 200, decided.text
            assert decided.json()["followed_by"] is False  # mia follows the groups, not him
            assert (await http.get("/api/v1/follow_requests")).json() == []
            again = await http.post(f"/api/v1/follow_requests/{mia.id}/authorize")
            assert again.status_code == 404
        assert await _follow_state(fedi, mia.id, garden.id) == "accepted"
        assert await _follow_state(fedi, mia.id, club.id) == "accepted"
        assert await _follow_state(fedi, mia.id, elsewhere.id) == "pending"  # not his group
        async with fedi.services.sessionmaker() as session:
            audited = (await session.execute(select(AuditEntry.action, AuditEntry.who).where(
                AuditEntry.target == mia.uri))).all()
            told = (await session.execute(select(Notification).where(
                Notification.recipient_id == mia.id))).scalars().all()
        assert sorted(audited) == [("group.approve", owner.uri), ("group.approve", owner.uri)]
        assert len(told) == 2
        async with client(fedi, mia_token) as http:
            now = (await http.get("/api/v1/accounts/relationships",
                                  params={"id[]": str(garden.id)})).json()[0]
            assert now["following"] is True and now["requested"] is False


async def test_a_rejected_request_is_gone_and_the_requester_may_ask_again(database_url: str
                                                                          ) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        garden = await make_group(fedi, "garden", "owner", join_policy="approval")
        mia = await make_user(fedi, "mia")
        mia_token = await token_for(fedi, "mia")
        owner_token = await token_for(fedi, "owner")
        async with client(fedi, mia_token) as http:
            await http.post(f"/api/v1/accounts/{garden.id}/follow")
        async with client(fedi, owner_token) as http:
            rejected = await http.post(f"/api/v1/follow_requests/{mia.id}/reject")
            assert rejected.status_code == 200
        assert await _follow_state(fedi, mia.id, garden.id) is None
        async with client(fedi, mia_token) as http:
            asked = await http.post(f"/api/v1/accounts/{garden.id}/follow")
            assert asked.json()["requested"] is True


async def test_an_invite_only_group_refuses_a_follow_with_the_reason(database_url: str
                                                                    ) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        circle = await make_group(fedi, "circle", "owner", join_policy="invite")
        mia = await make_user(fedi, "mia")
        async with client(fedi, await token_for(fedi, "mia")) as http:
            refused = await http.post(f"/api/v1/accounts/{circle.id}/follow")
        assert refused.status_code == 422
        assert "invite" in refused.json()["error"]
        assert await _follow_state(fedi, mia.id, circle.id) is None
