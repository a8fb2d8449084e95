"""What people do to statuses through the client API: favourite (the web's like, federated),
boost, bookmark, and the lists of who did and of one's own."""

from __future__ import annotations

import json

from sqlalchemy import select

from fedi.store.models import Actor, Delivery, Follow, OutboundActivity, Post, Reaction
from tests.api.support import api_app, client, token_for
from tests.api.test_statuses import community, create


async def test_a_favourite_counts_once_lists_the_person_and_is_taken_back(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        status = await create(fedi, tokens["alice"], status="@tech like this")
        path = f"/api/v1/statuses/{status['id']}"
        async with client(fedi, tokens["bob"]) as http:
            for _ in range(2):  # apps resend: the second changes nothing
                liked = (await http.post(f"{path}/favourite")).json()
                assert liked["favourited"] is True and liked["favourites_count"] == 1
            who = (await http.get(f"{path}/favourited_by")).json()
            assert [a["username"] for a in who] == ["bob"]
            mine = await http.get("/api/v1/favourites")
            assert [s["id"] for s in mine.json()] == [status["id"]]
            assert 'rel="next"' in mine.headers["link"]
        async with fedi.services.sessionmaker() as session:
            likes = (await session.execute(select(Reaction).where(
                Reaction.post_id == int(status["id"]), Reaction.type == "Like"))).scalars().all()
            assert len(likes) == 1
            # The same use case as the web's like button: the group relays the Like.
            sent = (await session.execute(select(OutboundActivity.body).where(
                OutboundActivity.uri == likes[0].activity_uri))).scalar_one()
            assert json.loads(sent)["type"] == "Like"
        async with client(fedi, tokens["alice"]) as http:
            seen = (await http.get(path)).json()
            assert seen["favourited"] is False and seen["favourites_count"] == 1
        async with client(fedi, tokens["bob"]) as http:
            for _ in range(2):
                undone = (await http.post(f"{path}/unfavourite")).json()
                assert undone["favourited"] is False and undone["favourites_count"] == 0
            assert (await http.get("/api/v1/favourites")).json() == []
            assert (await http.get(f"{path}/favourited_by")).json() == []


async def test_a_bookmark_shows_in_bookmarks_paged_by_the_bookmark(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        older = await create(fedi, tokens["alice"], status="@tech keep this")
        newer = await create(fedi, tokens["alice"], status="@tech and this")
        async with client(fedi, tokens["bob"]) as http:
            # Bookmarked newer first: the list follows the bookmarks, not the posts.
            for status in (newer, older):
                marked = (await http.post(f"/api/v1/statuses/{status['id']}/bookmark")).json()
                assert marked["bookmarked"] is True
            first = await http.get("/api/v1/bookmarks", params={"limit": 1})
            assert [s["id"] for s in first.json()] == [older["id"]]
            following = first.headers["link"].split(";")[0].strip("<>")
            second = await http.get(following)
            assert [s["id"] for s in second.json()] == [newer["id"]]
            await http.post(f"/api/v1/statuses/{older['id']}/unbookmark")
            left = (await http.get("/api/v1/bookmarks")).json()
            assert [s["id"] for s in left] == [newer["id"]]
        async with client(fedi, tokens["alice"]) as http:
            assert (await http.get("/api/v1/bookmarks")).json() == []
            assert (await http.get(f"/api/v1/statuses/{newer['id']}")).json()[
                "bookmarked"] is False


async def test_a_boost_reaches_the_boosters_followers_and_is_public_only(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        async with fedi.services.sessionmaker() as session, session.begin():
            bob = (await session.execute(select(Actor).where(
                Actor.username == "bob", Actor.local.is_(True)))).scalar_one()
            dan = Actor(uri="https://remote.example/users/dan", type="Person", local=False,
                        username="dan", domain="remote.example",
                        inbox="https://remote.example/users/dan/inbox",
                        shared_inbox="https://remote.example/inbox")
            session.add(dan)
            await session.flush()
            session.add(Follow(activity_uri="https://remote.example/follows/1", follower_id=dan.id,
                               target_id=bob.id, state="accepted"))
        status = await create(fedi, tokens["alice"], status="@tech share this")
        secret = await create(fedi, tokens["alice"], status="@tech not this",
                              fedi={"visibility": "members"})
        path = f"/api/v1/statuses/{status['id']}"
        async with client(fedi, tokens["bob"]) as http:
            for _ in range(2):
                boosted = (await http.post(f"{path}/reblog")).json()
                assert boosted["reblogged"] is True and boosted["reblogs_count"] == 1
            who = (await http.get(f"{path}/reblogged_by")).json()
            assert [a["username"] for a in who] == ["bob"]
            refused = await http.post(f"/api/v1/statuses/{secret['id']}/reblog")
            assert refused.status_code == 422
            assert "public and unlisted" in refused.json()["error"]
        async with fedi.services.sessionmaker() as session:
            sent = [(json.loads(body), inbox) for body, inbox in (await session.execute(
                select(OutboundActivity.body, Delivery.inbox_url)
                .join(Delivery, Delivery.activity_id == OutboundActivity.id)
                .where(Delivery.inbox_url == "https://remote.example/inbox"))).all()]
            boosted_post = await session.get(Post, int(status["id"]))
            assert boosted_post is not None
            assert [(a["type"], a["actor"], a["object"]) for a, _ in sent] == [
                ("Announce", bob.uri, boosted_post.uri)]
        async with client(fedi, tokens["bob"]) as http:
            undone = (await http.post(f"{path}/unreblog")).json()
            assert undone["reblogged"] is False and undone["reblogs_count"] == 0
        async with fedi.services.sessionmaker() as session:
            kinds = [json.loads(body)["type"] for body in (await session.execute(
                select(OutboundActivity.body)
                .join(Delivery, Delivery.activity_id == OutboundActivity.id)
                .where(Delivery.inbox_url == "https://remote.example/inbox")
                .order_by(OutboundActivity.id))).scalars()]
            assert kinds == ["Announce", "Undo"]


async def test_pin_and_mute_say_they_are_not_built_and_hidden_statuses_stay_404(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        status = await create(fedi, tokens["bob"], status="@tech mine")
        secret = await create(fedi, tokens["bob"], status="@tech ours",
                              fedi={"visibility": "members"})
        async with client(fedi, tokens["bob"]) as http:
            for action in ("pin", "unpin", "mute", "unmute"):
                answer = await http.post(f"/api/v1/statuses/{status['id']}/{action}")
                assert answer.status_code == 422, action
                assert "not supported" in answer.json()["error"]
        async with client(fedi, tokens["carol"]) as http:
            for action in ("favourite", "reblog", "bookmark", "pin"):
                answer = await http.post(f"/api/v1/statuses/{secret['id']}/{action}")
                assert answer.status_code == 404, action
            assert (await http.get(f"/api/v1/statuses/{secret['id']}/reblogged_by")
                    ).status_code == 404
        no_scope = await token_for(fedi, "bob", "read write:statuses")
        async with client(fedi, no_scope) as http:
            assert (await http.post(f"/api/v1/statuses/{status['id']}/favourite")
                    ).status_code == 403
