"""Timelines through the client API: home (joined groups, followed people, minus blocks and
mutes), public and hashtag (public posts only), Mastodon's pagination and Link header, the
list placeholder, and markers."""

from __future__ import annotations

import json
import re

import httpx

from fedi.api.timelines import tagged
from fedi.store.models import Follow, PersonRelation, Post
from tests.api.support import (
    api_app,
    client,
    join_group,
    make_group,
    make_user,
    token_for,
    write_post,
)


def ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [s["id"] for s in answer.json()]


def links(answer: httpx.Response) -> dict[str, str]:
    """rel → the URL's path and query, from a Link header."""
    return {rel: url.removeprefix("http://fedi.test") for url, rel in re.findall(
        r'<([^>]+)>; rel="(\w+)"', answer.headers.get("link", ""))}


async def test_home_shows_joined_groups_and_followed_people_not_other_groups(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        cats = await make_group(fedi, "cats", "owner")
        dogs = await make_group(fedi, "dogs", "owner")
        await join_group(fedi, "alice", cats)
        await join_group(fedi, "bob", cats)
        await join_group(fedi, "bob", dogs)
        thread = await write_post(fedi, "bob", cats, "cats thread")
        reply = await write_post(fedi, "owner", cats, "a reply", reply_to=thread)
        elsewhere = await write_post(fedi, "bob", dogs, "dogs thread")
        own = await write_post(fedi, "alice", cats, "alice's own")
        token = await token_for(fedi, "alice")
        async with client(fedi, token) as http:
            home = await http.get("/api/v1/timelines/home")
            assert ids(home) == [str(own.id), str(reply.id), str(thread.id)]
            assert str(elsewhere.id) not in ids(home)
            first = home.json()[1]
            assert first["in_reply_to_id"] == str(thread.id)
            assert first["account"]["username"] == "owner"
            assert first["visibility"] == "public"
            # Following bob brings his posts in other groups; blocking him takes all out.
            async with fedi.services.sessionmaker() as session, session.begin():
                alice, bob = await make_user(fedi, "alice"), await make_user(fedi, "bob")
                session.add(Follow(follower_id=alice.id, target_id=bob.id, state="accepted"))
            assert ids(await http.get("/api/v1/timelines/home")) == [
                str(own.id), str(elsewhere.id), str(reply.id), str(thread.id)]
            async with fedi.services.sessionmaker() as session, session.begin():
                session.add(PersonRelation(actor_id=alice.id, target_id=bob.id, kind="mute"))
            assert ids(await http.get("/api/v1/timelines/home")) == [
                str(own.id), str(reply.id)]
        async with client(fedi, None) as anonymous:
            refused = await anonymous.get("/api/v1/timelines/home")
            assert refused.status_code == 401 and "error" in refused.json()
        async with client(fedi, await token_for(fedi, "alice", "read:accounts")) as narrow:
            assert (await narrow.get("/api/v1/timelines/home")).status_code == 403


async def test_pages_of_25_posts_by_max_id_since_id_and_min_id_have_no_gaps_or_repeats(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        group = await make_group(fedi, "cats", "owner")
        await join_group(fedi, "alice", group)
        written = [str((await write_post(fedi, "owner", group, f"post {n}")).id) for n in range(25)]
        newest_first = list(reversed(written))
        async with client(fedi, await token_for(fedi, "alice")) as http:
            seen: list[str] = []
            url = "/api/v1/timelines/home?limit=10"
            pages = 0
            while url and pages < 10:
                answer = await http.get(url)
                page = ids(answer)
                if not page:
                    break
                assert len(page) <= 10
                seen += page
                url = links(answer).get("next", "")
                pages += 1
            assert seen == newest_first
            assert pages == 3
            # Link: next (older, max_id) before prev (newer, min_id), the limit kept.
            first = await http.get("/api/v1/timelines/home?limit=10")
            header = first.headers["link"]
            assert header.index('rel="next"') < header.index('rel="prev"')
            assert links(first)["next"] == f"/api/v1/timelines/home?limit=10&max_id={written[15]}"
            assert links(first)["prev"] == f"/api/v1/timelines/home?limit=10&min_id={written[24]}"
            # since_id: the newest ones above it; min_id: the ones just above it.
            assert ids(await http.get(
                f"/api/v1/timelines/home?since_id={written[4]}&limit=3")) == newest_first[:3]
            assert ids(await http.get(
                f"/api/v1/timelines/home?min_id={written[4]}&limit=3")) == [
                    written[7], written[6], written[5]]
            back = await http.get(f"/api/v1/timelines/home?min_id={written[4]}&limit=3")
            assert links(back)["prev"].endswith(f"min_id={written[7]}")
            assert ids(await http.get("/api/v1/timelines/home?limit=100")) == newest_first
            assert len(ids(await http.get("/api/v1/timelines/home"))) == 20
            empty = await http.get(f"/api/v1/timelines/home?since_id={written[24]}")
            assert ids(empty) == [] and "link" not in empty.headers
            bad = await http.get("/api/v1/timelines/home?max_id=abc")
            assert bad.status_code == 422 and "max_id" in bad.json()["error"]


async def test_a_members_only_post_is_in_members_homes_only_never_public_or_tag_timelines(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        group = await make_group(fedi, "cats", "owner")
        await join_group(fedi, "alice", group)
        await make_user(fedi, "mallory")
        shown = await write_post(fedi, "owner", group, "open to all #Caturday")
        hidden = await write_post(fedi, "owner", group, "members only #caturday",
                                  visibility="members")
        unlisted = await write_post(fedi, "owner", group, "quiet #caturday", visibility="unlisted")
        member = await token_for(fedi, "alice")
        outsider = await token_for(fedi, "mallory")
        async with client(fedi, member) as http:
            assert ids(await http.get("/api/v1/timelines/home")) == [
                str(unlisted.id), str(hidden.id), str(shown.id)]
            assert ids(await http.get("/api/v1/timelines/public")) == [str(shown.id)]
            assert ids(await http.get("/api/v1/timelines/tag/caturday")) == [str(shown.id)]
        async with client(fedi, outsider) as http:
            assert ids(await http.get("/api/v1/timelines/home")) == []
            # Following the author does not open the group's members-only post to mallory.
            async with fedi.services.sessionmaker() as session, session.begin():
                mallory, owner = await make_user(fedi, "mallory"), await make_user(fedi, "owner")
                session.add(Follow(follower_id=mallory.id, target_id=owner.id, state="accepted"))
            assert ids(await http.get("/api/v1/timelines/home")) == [
                str(unlisted.id), str(shown.id)]
        async with client(fedi, None) as anonymous:
            public = await anonymous.get("/api/v1/timelines/public")
            assert ids(public) == [str(shown.id)]
            assert public.json()[0]["content"].find("open to all") >= 0
            assert ids(await anonymous.get("/api/v1/timelines/public?local=true")) == [
                str(shown.id)]
            assert ids(await anonymous.get("/api/v1/timelines/public?remote=true")) == []
            assert ids(await anonymous.get("/api/v1/timelines/public?only_media=true")) == []
            assert ids(await anonymous.get("/api/v1/timelines/tag/CATURDAY")) == [
                str(shown.id)]
            assert ids(await anonymous.get("/api/v1/timelines/tag/dogs")) == []
            assert ids(await anonymous.get("/api/v1/timelines/tag/catur")) == []
            bad = await anonymous.get("/api/v1/timelines/tag/no%20spaces")
            assert bad.status_code == 422 and "hashtag" in bad.json()["error"]
            listed = await anonymous.get("/api/v1/timelines/list/1")
            assert listed.status_code == 401


async def test_a_tag_with_letters_beyond_ascii_is_found(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        group = await make_group(fedi, "cafes", "owner")
        found = await write_post(fedi, "owner", group, "un #café noir")
        await write_post(fedi, "owner", group, "un #cafés au lait")
        async with client(fedi, None) as anonymous:
            assert ids(await anonymous.get("/api/v1/timelines/tag/café")) == [str(found.id)]


async def test_a_page_of_hidden_posts_still_fills_and_links_past_them(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        group = await make_group(fedi, "cats", "owner")
        older = [await write_post(fedi, "owner", group, f"public {n}") for n in range(3)]
        for n in range(30):
            await write_post(fedi, "owner", group, f"secret {n}", visibility="members")
        async with client(fedi, None) as anonymous:
            answer = await anonymous.get("/api/v1/timelines/public?limit=2")
            assert ids(answer) == [str(older[2].id), str(older[1].id)]
            after = await anonymous.get(links(answer)["next"])
            assert ids(after) == [str(older[0].id)]


async def test_lists_do_not_exist_and_markers_round_trip_with_versions(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        async with client(fedi, await token_for(fedi, "alice")) as http:
            missing = await http.get("/api/v1/timelines/list/7")
            assert missing.status_code == 404 and missing.json()["error"] == "Record not found"
            none = await http.get("/api/v1/markers", params={"timeline[]": "home"})
            assert none.status_code == 200 and none.json() == {}
            saved = await http.post("/api/v1/markers", data={"home[last_read_id]": "105"})
            assert saved.status_code == 200, saved.text
            assert saved.json()["home"]["last_read_id"] == "105"
            assert saved.json()["home"]["version"] == 1
            again = await http.post("/api/v1/markers", json={
                "home": {"last_read_id": "110"}, "notifications": {"last_read_id": "3"}})
            assert again.json()["home"] == {
                "last_read_id": "110", "version": 2,
                "updated_at": again.json()["home"]["updated_at"]}
            assert again.json()["notifications"]["version"] == 1
            both = await http.get("/api/v1/markers?timeline[]=home&timeline[]=notifications")
            assert both.json()["home"]["last_read_id"] == "110"
            assert both.json()["notifications"]["last_read_id"] == "3"
            only = await http.get("/api/v1/markers?timeline[]=notifications")
            assert list(only.json()) == ["notifications"]
            refused = await http.post("/api/v1/markers", json={"home": {}})
            assert refused.status_code == 422
            assert "home[last_read_id]" in refused.json()["error"]
            assert (await http.post("/api/v1/markers", json={})).status_code == 422
        async with client(fedi, await token_for(fedi, "bob")) as other:
            assert (await other.get("/api/v1/markers?timeline[]=home")).json() == {}


def test_a_tag_is_a_hashtag_tag_or_the_word_in_the_text_never_a_longer_word() -> None:
    tagged_doc = Post(content="<p>no tag in the text</p>", document=json.dumps(
        {"tag": [{"type": "Hashtag", "name": "#Caturday", "href": "https://x/tags/caturday"}]}))
    assert tagged(tagged_doc, "caturday")
    assert not tagged(tagged_doc, "cat")
    written = Post(content="<p>it is #caturday, and #dogs_day.</p>", document="{}")
    assert tagged(written, "caturday") and tagged(written, "dogs_day")
    assert not tagged(written, "dogs") and not tagged(written, "catur")
    assert not tagged(Post(content="<p>a##caturday or x#caturday</p>", document="not json"),
                      "caturday")
