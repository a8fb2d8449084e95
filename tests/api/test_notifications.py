"""Notifications through the client API: replies and mentions (both `mention`), likes
(`favourite`), join requests to moderators (`follow_request`), fedi's own kinds only when
asked for, filters, dismiss and clear, the gate asked again at read time, blocks, and the
notifications marker marking them read."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import parse_activity
from fedi.groups import notices
from fedi.groups.inbound import handle_reaction
from fedi.groups.membership import handle_follow, leave_local_group
from fedi.groups.moderation import approve
from fedi.groups.reactions import boost, vote
from fedi.handlers import HandlerContext
from fedi.store.models import Actor, Follow, Notification, PersonRelation, Post
from tests.api.support import (
    api_app,
    client,
    join_group,
    make_group,
    make_user,
    token_for,
    write_post,
)
from tests.support.app import InProcess


async def like(fedi: InProcess, name: str, target: Post) -> bool:
    async with fedi.services.sessionmaker() as session, session.begin():
        person = await make_user(fedi, name)
        return await vote(session, fedi.services.urls, await session.merge(person),
                          await session.merge(target))


def kinds(answer: httpx.Response) -> list[tuple[str, str]]:
    """(type, account username) of each notification, newest first."""
    assert answer.status_code == 200, answer.text
    return [(n["type"], n["account"]["username"]) for n in answer.json()]


async def test_replies_mentions_likes_and_join_requests_arrive_with_mastodon_types(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        cats = await make_group(fedi, "cats", "owner")
        club = await make_group(fedi, "club", "owner", join_policy="approval")
        for name in ("bob", "alice", "carol"):
            await join_group(fedi, name, cats)
        thread = await write_post(fedi, "bob", cats, "my thread")
        reply = await write_post(fedi, "alice", cats, "a reply", reply_to=thread)
        mention = await write_post(fedi, "carol", cats, "hello @bob, see this")
        assert await like(fedi, "alice", thread)
        assert not await like(fedi, "alice", thread)  # taken back …
        assert await like(fedi, "alice", thread)  # … and given again: told once
        await like(fedi, "bob", thread)  # nobody is told of their own like
        await join_group(fedi, "dave", club)
        async with client(fedi, await token_for(fedi, "bob")) as http:
            found = await http.get("/api/v1/notifications")
            assert kinds(found) == [("favourite", "alice"), ("mention", "carol"),
                                    ("mention", "alice")]
            by_type = {n["type"] + n["account"]["username"]: n for n in found.json()}
            assert by_type["mentionalice"]["status"]["id"] == str(reply.id)
            assert by_type["mentionalice"]["fedi"]["kind"] == "reply"
            assert by_type["mentioncarol"]["status"]["id"] == str(mention.id)
            assert by_type["favouritealice"]["status"]["id"] == str(thread.id)
            assert by_type["favouritealice"]["status"]["favourites_count"] == 1
            assert all(n["id"].isdigit() and n["created_at"].endswith("Z")
                       for n in found.json())
            only = await http.get("/api/v1/notifications", params={"types[]": "mention"})
            assert kinds(only) == [("mention", "carol"), ("mention", "alice")]
            without = await http.get("/api/v1/notifications?exclude_types[]=mention")
            assert kinds(without) == [("favourite", "alice")]
            alice = await make_user(fedi, "alice")
            from_alice = await http.get(f"/api/v1/notifications?account_id={alice.id}")
            assert kinds(from_alice) == [("favourite", "alice"), ("mention", "alice")]
            assert (await http.get("/api/v1/notifications?account_id=x")).status_code == 422
        async with client(fedi, await token_for(fedi, "owner")) as http:
            asked = await http.get("/api/v1/notifications")
            assert kinds(asked) == [("follow_request", "dave")]
            assert asked.json()[0]["fedi"]["group"]["username"] == "club"
            assert asked.json()[0]["status"] is None


async def test_fedi_kinds_only_when_asked_and_one_dismiss_clear_and_unread_count(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        owner = await make_user(fedi, "owner")
        club = await make_group(fedi, "club", "owner", join_policy="approval")
        cats = await make_group(fedi, "cats", "owner")
        await join_group(fedi, "dave", club)
        await join_group(fedi, "dave", cats)
        async with fedi.services.sessionmaker() as session, session.begin():
            await approve(session, fedi.services.urls, await session.merge(club),
                          await make_user(fedi, "dave"))
        thread = await write_post(fedi, "dave", cats, "thread")
        await write_post(fedi, "owner", cats, "reply", reply_to=thread)
        async with client(fedi, await token_for(fedi, "dave")) as http:
            assert kinds(await http.get("/api/v1/notifications")) == [("mention", "owner")]
            asked = await http.get("/api/v1/notifications?types[]=join_approved&types[]=mention")
            assert kinds(asked) == [("mention", "owner"), ("join_approved", "club")]
            approved, mention = asked.json()[1], asked.json()[0]
            assert approved["fedi"]["kind"] == "join_approved"
            assert (await http.get("/api/v1/notifications/unread_count")).json() == {"count": 2}
            one = await http.get(f"/api/v1/notifications/{mention['id']}")
            assert one.status_code == 200 and one.json()["status"]["id"] != str(thread.id)
            # The notifications marker marks read what it has passed.
            await http.post("/api/v1/markers",
                            data={"notifications[last_read_id]": approved["id"]})
            assert (await http.get("/api/v1/notifications/unread_count")).json() == {"count": 1}
            dismissed = await http.post(f"/api/v1/notifications/{mention['id']}/dismiss")
            assert dismissed.status_code == 200 and dismissed.json() == {}
            gone = await http.get(f"/api/v1/notifications/{mention['id']}")
            assert gone.status_code == 404 and gone.json()["error"] == "Record not found"
            again = await http.post(f"/api/v1/notifications/{mention['id']}/dismiss")
            assert again.status_code == 404
            assert kinds(await http.get("/api/v1/notifications")) == []
            assert (await http.get("/api/v1/notifications/abc")).status_code == 404
        async with client(fedi, await token_for(fedi, "owner")) as other:
            # Dave's notification is not the owner's to read or dismiss.
            theirs = await other.get(f"/api/v1/notifications/{approved['id']}")
            assert theirs.status_code == 404
            assert (await other.post(
                "/api/v1/notifications/dismiss", data={"id": approved["id"]})).status_code == 404
            assert (await other.post("/api/v1/notifications/clear")).json() == {}
        async with client(fedi, await token_for(fedi, "dave")) as http:
            kept = await http.get("/api/v1/notifications?types[]=join_approved")
            assert kinds(kept) == [("join_approved", "club")]
            assert (await http.post("/api/v1/notifications/clear")).status_code == 200
            assert kinds(await http.get("/api/v1/notifications?types[]=join_approved")) == []
        async with client(fedi, await token_for(fedi, "dave", "read:statuses")) as narrow:
            assert (await narrow.get("/api/v1/notifications")).status_code == 403
            assert (await narrow.post("/api/v1/notifications/clear")).status_code == 403
        assert owner.id


async def test_the_gate_and_blocks_leave_notifications_out_when_read(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        cats = await make_group(fedi, "cats", "owner")
        await join_group(fedi, "alice", cats)
        await join_group(fedi, "mallory", cats)
        await write_post(fedi, "owner", cats, "members only, @alice", visibility="members")
        await write_post(fedi, "mallory", cats, "hey @alice")
        async with client(fedi, await token_for(fedi, "alice")) as http:
            assert kinds(await http.get("/api/v1/notifications")) == [
                ("mention", "mallory"), ("mention", "owner")]
            async with fedi.services.sessionmaker() as session, session.begin():
                alice = await make_user(fedi, "alice")
                mallory = await make_user(fedi, "mallory")
                await leave_local_group(session, await session.merge(cats), alice)
                session.add(PersonRelation(actor_id=alice.id, target_id=mallory.id,
                                           kind="block"))
            # Alice left: the members-only post is no longer hers to see; mallory is blocked.
            assert kinds(await http.get("/api/v1/notifications")) == []
            async with fedi.services.sessionmaker() as session:
                stored = (await session.execute(
                    Notification.__table__.select().where(
                        Notification.recipient_id == alice.id))).all()
            assert len(stored) == 2  # still recorded: left out when read, not forgotten


async def test_a_page_of_notifications_links_past_what_it_read(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        cats = await make_group(fedi, "cats", "owner")
        await join_group(fedi, "alice", cats)
        thread = await write_post(fedi, "alice", cats, "thread")
        for n in range(5):
            await write_post(fedi, "owner", cats, f"reply {n}", reply_to=thread)
        async with client(fedi, await token_for(fedi, "alice")) as http:
            first = await http.get("/api/v1/notifications?limit=3")
            assert len(first.json()) == 3
            link = first.headers["link"]
            assert link.index('rel="next"') < link.index('rel="prev"')
            next_url = link.split(">")[0].removeprefix("<http://fedi.test")
            rest = await http.get(next_url)
            assert len(rest.json()) == 2
            seen = [n["id"] for n in first.json() + rest.json()]
            assert len(set(seen)) == 5 and seen == sorted(seen, key=int, reverse=True)


async def test_follows_of_our_people_tell_them_once(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        alice, bob = await make_user(fedi, "alice"), await make_user(fedi, "bob")
        for _ in range(2):
            async with fedi.services.sessionmaker() as session, session.begin():
                await notices.followed(session, bob, alice)
        async with client(fedi, await token_for(fedi, "alice")) as http:
            assert kinds(await http.get("/api/v1/notifications")) == [("follow", "bob")]


async def test_a_boost_tells_the_author_once_as_reblog(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        cats = await make_group(fedi, "cats", "owner")
        await join_group(fedi, "alice", cats)
        thread = await write_post(fedi, "owner", cats, "boost me")
        for undo in (False, True, False):
            async with fedi.services.sessionmaker() as session, session.begin():
                alice = await make_user(fedi, "alice")
                await boost(session, fedi.services.urls, await session.merge(alice),
                            await session.merge(thread), undo=undo)
        async with client(fedi, await token_for(fedi, "owner")) as http:
            found = await http.get("/api/v1/notifications?types[]=reblog")
            assert kinds(found) == [("reblog", "alice")]
            assert found.json()[0]["status"]["id"] == str(thread.id)


class KnownActors:
    """The actor source of an inbox handler, for actors already stored (nothing fetched)."""

    async def actor(self, session: AsyncSession, uri: str, *, refresh: bool = False) -> Actor:
        return (await session.execute(select(Actor).where(Actor.uri == uri))).scalar_one()

    async def fetch(self, url: str) -> dict[str, Any]:
        raise AssertionError(f"nothing is fetched here ({url})")

    async def software(self, session: AsyncSession, host: str) -> str | None:
        return None


async def test_a_remote_like_and_a_remote_follow_reach_our_person(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        cats = await make_group(fedi, "cats", "owner")
        await join_group(fedi, "alice", cats)
        thread = await write_post(fedi, "alice", cats, "like me from afar")
        remote = "https://remote.example/users/rita"
        async with fedi.services.sessionmaker() as session, session.begin():
            rita = Actor(uri=remote, type="Person", username="rita", domain="remote.example",
                         inbox=f"{remote}/inbox")
            session.add(rita)
            await session.flush()
            session.add(Follow(follower_id=rita.id, target_id=cats.id, state="accepted"))
        alice = await make_user(fedi, "alice")
        for document, handler in (
            ({"id": f"{remote}#likes/1", "type": "Like", "actor": remote,
              "object": thread.uri}, handle_reaction),
            ({"id": f"{remote}#follows/1", "type": "Follow", "actor": remote,
              "object": alice.uri}, handle_follow),
        ):
            async with fedi.services.sessionmaker() as session, session.begin():
                context = HandlerContext(session, fedi.services.urls, KnownActors())
                await handler(context, parse_activity(document))
        async with client(fedi, await token_for(fedi, "alice")) as http:
            found = await http.get("/api/v1/notifications")
            assert [(n["type"], n["account"]["acct"]) for n in found.json()] == [
                ("follow", "rita@remote.example"), ("favourite", "rita@remote.example")]
            assert found.json()[1]["status"]["id"] == str(thread.id)
            assert found.json()[0]["status"] is None
