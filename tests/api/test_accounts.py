"""Accounts through the client API: the caller's own (with `source`), profile changes
through the web settings' use cases, groups as accounts, their statuses through the gate,
and member lists that keep a private group's members to its members."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from fedi.actors.local import find_local
from fedi.groups.membership import join_local_group
from fedi.groups.moderation import set_pinned
from fedi.groups.posting import post_to_group
from fedi.store.models import Actor, Follow, OutboundActivity, Post
from tests.api.support import api_app, client, make_group, make_user, token_for
from tests.support.app import InProcess


async def _post(fedi: InProcess, author: str, group: str, text: str, *,
                reply_to: str | None = None, visibility: str | None = None) -> Post:
    async with fedi.services.sessionmaker() as session, session.begin():
        person = await find_local(session, author)
        place = await find_local(session, group)
        assert person is not None and place is not None
        return (await post_to_group(session, fedi.services.urls, person, place, text,
                                    reply_to=reply_to, visibility=visibility,
                                    title=None if reply_to else text)).post


async def _join(fedi: InProcess, person: str, group: str) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        who, place = await find_local(session, person), await find_local(session, group)
        assert who is not None and place is not None
        row = await join_local_group(session, fedi.services.urls, place, who)
        row.state = "accepted"  # as a moderator's approval leaves it


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_verify_credentials_gives_the_source_and_needs_a_person(database_url: str
                                                                      ) -> None:
    async with api_app(database_url) as fedi:
        token = await token_for(fedi, "alice")
        app_only = await token_for(fedi, None)
        read_statuses = await token_for(fedi, "alice", "read:statuses")
        async with client(fedi, token) as http:
            answer = await http.get("/api/v1/accounts/verify_credentials")
        assert answer.status_code == 200
        body = answer.json()
        assert body["username"] == "alice" and body["acct"] == "alice"
        assert body["group"] is False and body["locked"] is False
        assert body["avatar"].endswith("/static/default-avatar.png")
        assert body["source"] == {"privacy": "public", "sensitive": False, "language": "",
                                  "note": "", "fields": [], "follow_requests_count": 0}
        async with client(fedi, app_only) as http:
            assert (await http.get("/api/v1/accounts/verify_credentials")).status_code == 422
        async with client(fedi, None) as http:
            assert (await http.get("/api/v1/accounts/verify_credentials")).status_code == 401
        async with client(fedi, read_statuses) as http:
            assert (await http.get("/api/v1/accounts/verify_credentials")).status_code == 403


async def test_update_credentials_changes_the_profile_or_nothing(
    database_url: str, tmp_path: Path,
) -> None:
    async with api_app(database_url, media_dir=str(tmp_path / "media")) as fedi:
        token = await token_for(fedi, "alice")
        alice = await make_user(fedi, "alice")
        async with fedi.services.sessionmaker() as session, session.begin():
            zed = Actor(uri="https://far.example/users/zed", type="Person", local=False,
                        username="zed", domain="far.example",
                        inbox="https://far.example/users/zed/inbox")
            session.add(zed)
            await session.flush()
            session.add(Follow(follower_id=zed.id, target_id=alice.id, state="accepted"))
        async with client(fedi, token) as http:
            changed = await http.patch("/api/v1/accounts/update_credentials", data={
                "display_name": "Alice A.", "note": "Gardens.\n\nAnd bees."})
            assert changed.status_code == 200, changed.text
            assert changed.json()["display_name"] == "Alice A."
            assert changed.json()["source"]["note"] == "Gardens.\n\nAnd bees."
            assert changed.json()["note"] == "<p>Gardens.</p><p>And bees.</p>"
            async with fedi.services.sessionmaker() as session:
                told = [json.loads(a.body) for a in (await session.execute(
                    select(OutboundActivity).where(OutboundActivity.actor_id == alice.id))
                ).scalars()]
            assert [(a["type"], a["object"]["name"]) for a in told] == [("Update", "Alice A.")]
            # A bad image refuses the whole request: the name stays as it was.
            refused = await http.patch(
                "/api/v1/accounts/update_credentials", data={"display_name": "Mallory"},
                files={"avatar": ("x.png", b"not an image", "image/png")})
            assert refused.status_code == 422
            assert "image" in refused.json()["error"]
            assert refused.json()["details"]["avatar"][0]["error"] == "ERR_INVALID"
            too_long = await http.patch("/api/v1/accounts/update_credentials",
                                        json={"display_name": "x" * 101})
            assert too_long.status_code == 422 and "display name" in too_long.json()["error"]
            header = await http.patch(
                "/api/v1/accounts/update_credentials",
                files={"header": ("h.png", _png(), "image/png")})
            assert header.status_code == 422
            me = (await http.get("/api/v1/accounts/verify_credentials")).json()
            assert me["display_name"] == "Alice A."
            pictured = await http.patch(
                "/api/v1/accounts/update_credentials",
                files={"avatar": ("me.png", _png(), "image/png")})
            assert pictured.status_code == 200, pictured.text
            avatar = pictured.json()["avatar"]
            assert re.fullmatch(r"http://fedi\.test/media/avatars/[\w-]+\.png", avatar)
            assert pictured.json()["display_name"] == "Alice A."  # untouched
            served = await http.get(avatar.removeprefix("http://fedi.test"))
            assert served.status_code == 200 and served.content == _png()


async def test_a_group_is_an_account_and_a_hidden_one_is_for_its_members(database_url: str
                                                                          ) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        garden = await make_group(fedi, "garden", "owner", join_policy="approval")
        secret = await make_group(fedi, "secret", "owner", privacy="hidden")
        outsider = await token_for(fedi, "eve")
        owner = await token_for(fedi, "owner")
        async with client(fedi, outsider) as http:
            body = (await http.get(f"/api/v1/accounts/{garden.id}")).json()
            assert body["group"] is True and body["locked"] is True
            assert body["acct"] == "garden" and body["id"] == str(garden.id)
            assert "Mention @garden@fedi.test in a post to post here." in body["note"]
            assert (await http.get(f"/api/v1/accounts/{secret.id}")).status_code == 404
            assert (await http.get(
                "/api/v1/accounts/lookup", params={"acct": "secret"})).status_code == 404
            found = await http.get("/api/v1/accounts/lookup", params={"acct": "@garden"})
            assert found.json()["id"] == str(garden.id)
            at_host = await http.get("/api/v1/accounts/lookup",
                                     params={"acct": "garden@fedi.test"})
            assert at_host.json()["id"] == str(garden.id)
            assert (await http.get("/api/v1/accounts/lookup")).status_code == 422
            assert (await http.get("/api/v1/accounts/999999")).status_code == 404
            assert (await http.get("/api/v1/accounts/abc")).status_code == 404
            assert (await http.get(f"/api/v1/accounts/{garden.id}/featured_tags")).json() == []
            familiar = await http.get("/api/v1/accounts/familiar_followers",
                                      params={"id[]": str(garden.id)})
            assert familiar.json() == [{"id": str(garden.id), "accounts": []}]
        async with client(fedi, owner) as http:
            assert (await http.get(f"/api/v1/accounts/{secret.id}")).status_code == 200
        async with client(fedi, None) as http:  # public, no token
            assert (await http.get(f"/api/v1/accounts/{garden.id}")).status_code == 200


async def test_a_groups_statuses_pass_the_gate_and_page_with_links(database_url: str
                                                                    ) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        await make_user(fedi, "mia")
        town = await make_group(fedi, "town", "owner")
        await _join(fedi, "mia", "town")
        first = await _post(fedi, "owner", "town", "Open thread")
        inner = await _post(fedi, "owner", "town", "Members only", visibility="members")
        reply = await _post(fedi, "mia", "town", "A reply", reply_to=first.uri)
        async with fedi.services.sessionmaker() as session, session.begin():
            group = await session.get(Actor, town.id)
            pinned = await session.get(Post, first.id)
            assert group is not None and pinned is not None
            await set_pinned(session, group, pinned, pinned=True, urls=fedi.services.urls)
        member = await token_for(fedi, "mia")
        path = f"/api/v1/accounts/{town.id}/statuses"
        async with client(fedi, None) as http:
            seen = [s["id"] for s in (await http.get(path)).json()]
            assert seen == [str(reply.id), str(first.id)]  # not the members-only thread
        async with client(fedi, member) as http:
            everything = (await http.get(path)).json()
            assert [s["id"] for s in everything] == [str(reply.id), str(inner.id),
                                                     str(first.id)]
            assert everything[1]["visibility"] == "private"
            threads = (await http.get(path, params={"exclude_replies": "true"})).json()
            assert [s["id"] for s in threads] == [str(inner.id), str(first.id)]
            pins = (await http.get(path, params={"pinned": "true"})).json()
            assert [s["id"] for s in pins] == [str(first.id)]
            assert (await http.get(path, params={"only_media": "1"})).json() == []
            page = await http.get(path, params={"limit": "1"})
            assert [s["id"] for s in page.json()] == [str(reply.id)]
            link = page.headers["link"]
            assert f"max_id={reply.id}" in link and 'rel="next"' in link
            older = await http.get(path, params={"limit": "1", "max_id": str(reply.id)})
            assert [s["id"] for s in older.json()] == [str(inner.id)]
            newer = await http.get(path, params={"min_id": str(first.id), "limit": "1"})
            assert [s["id"] for s in newer.json()] == [str(inner.id)]
            assert (await http.get(path, params={"limit": "x"})).status_code == 422
            assert (await http.get(path, params={"max_id": "x"})).status_code == 422
            mine = (await http.get(f"/api/v1/accounts/{reply.author_id}/statuses")).json()
            assert [s["id"] for s in mine] == [str(reply.id)]


async def test_members_of_a_private_group_are_listed_to_its_members_only(database_url: str
                                                                         ) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        mia = await make_user(fedi, "mia")
        club = await make_group(fedi, "club", "owner", privacy="private")
        park = await make_group(fedi, "park", "owner")
        await _join(fedi, "mia", "club")
        await _join(fedi, "mia", "park")
        outsider = await token_for(fedi, "eve")
        member = await token_for(fedi, "mia")
        async with fedi.services.sessionmaker() as session:
            assert (await session.execute(select(Follow).where(
                Follow.target_id == club.id, Follow.state == "accepted"))).scalar_one()
        async with client(fedi, outsider) as http:
            assert (await http.get(f"/api/v1/accounts/{club.id}/followers")).json() == []
            park_members = (await http.get(f"/api/v1/accounts/{park.id}/followers")).json()
            assert [a["username"] for a in park_members] == ["mia"]
            follows = (await http.get(f"/api/v1/accounts/{mia.id}/following")).json()
            assert [a["username"] for a in follows] == ["park"]
            assert (await http.get(f"/api/v1/accounts/{club.id}/following")).json() == []
        async with client(fedi, member) as http:
            members = (await http.get(f"/api/v1/accounts/{club.id}/followers")).json()
            assert [a["username"] for a in members] == ["mia"]
            follows = (await http.get(f"/api/v1/accounts/{mia.id}/following")).json()
            assert sorted(a["username"] for a in follows) == ["club", "park"]
