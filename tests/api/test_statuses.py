"""Statuses through the client API: posting into a group (by mention or by reply) under the
group's rules, reading through the privacy gate, edits and their history, deletion."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from fedi.actors.local import find_local
from fedi.groups.membership import join_local_group
from fedi.groups.moderation import set_locked, update_settings
from fedi.store.models import Post
from tests.api.support import api_app, client, make_group, make_user, token_for
from tests.support.app import InProcess


async def join(fedi: InProcess, group: str, person: str) -> None:
    await make_user(fedi, person)
    async with fedi.services.sessionmaker() as session, session.begin():
        found = await find_local(session, group)
        member = await find_local(session, person)
        assert found is not None and member is not None
        await join_local_group(session, fedi.services.urls, found, member)


async def community(fedi: InProcess, **options: object) -> dict[str, str]:
    """Group `tech` owned by alice with bob as a member; carol is not a member. Tokens."""
    await make_user(fedi, "alice")
    await make_group(fedi, "tech", "alice", **options)
    await join(fedi, "tech", "alice")
    await join(fedi, "tech", "bob")
    return {name: await token_for(fedi, name) for name in ("alice", "bob", "carol")}


async def post_count(fedi: InProcess) -> int:
    async with fedi.services.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(Post))).scalar_one())


async def create(app: InProcess, token: str, **body: Any) -> dict[str, Any]:
    async with client(app, token) as http:
        answer = await http.post("/api/v1/statuses", json=body)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def test_a_status_mentioning_a_group_starts_a_thread_with_its_first_line_as_title(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        async with client(fedi, tokens["bob"]) as http:
            answer = await http.post("/api/v1/statuses", data={
                "status": "@tech Which laptop?\nI need one that runs **Linux**.",
                "visibility": "public"})
            assert answer.status_code == 200, answer.text
            status = answer.json()
            assert status["fedi"]["group"]["acct"] == "tech"
            assert status["fedi"]["title"] == "Which laptop?"
            assert "<strong>Linux</strong>" in status["content"]
            assert status["visibility"] == "public"
            assert status["account"]["username"] == "bob"
            assert status["in_reply_to_id"] is None
            again = await http.get(f"/api/v1/statuses/{status['id']}")
            assert again.status_code == 200 and again.json()["id"] == status["id"]
            source = (await http.get(f"/api/v1/statuses/{status['id']}/source")).json()
            assert source == {"id": status["id"],
                              "text": "I need one that runs **Linux**.", "spoiler_text": ""}
        async with client(fedi, None) as anonymous:
            public = await anonymous.get(f"/api/v1/statuses/{status['id']}")
            assert public.status_code == 200


async def test_a_reply_goes_into_the_parents_group_and_context_shows_the_tree(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        top = await create(fedi, tokens["alice"], status="@tech Welcome, say hello @carol")
        first = await create(fedi, tokens["bob"], status="hello!", in_reply_to_id=top["id"])
        second = await create(fedi, tokens["alice"], status="hi bob",
                              in_reply_to_id=first["id"])
        other = await create(fedi, tokens["bob"], status="also: rules?",
                             in_reply_to_id=top["id"])
        assert first["in_reply_to_id"] == top["id"]
        assert first["in_reply_to_account_id"] == top["account"]["id"]
        assert first["fedi"]["group"]["acct"] == "tech"
        assert first["fedi"]["thread_id"] == top["id"]
        assert sorted(m["acct"] for m in top["mentions"]) == ["carol", "tech"]
        assert sorted(m["acct"] for m in first["mentions"]) == ["alice", "tech"]
        async with client(fedi, tokens["bob"]) as http:
            whole = (await http.get(f"/api/v1/statuses/{top['id']}/context")).json()
            middle = (await http.get(f"/api/v1/statuses/{first['id']}/context")).json()
            many = (await http.get("/api/v1/statuses", params=[
                ("id[]", second["id"]), ("id[]", top["id"]), ("id[]", "999999")])).json()
        assert whole["ancestors"] == []
        assert [s["id"] for s in whole["descendants"]] == [first["id"], second["id"],
                                                         other["id"]]
        assert [s["id"] for s in middle["ancestors"]] == [top["id"]]
        assert [s["id"] for s in middle["descendants"]] == [second["id"]]
        assert [s["id"] for s in many] == [second["id"], top["id"]]


async def test_an_idempotency_key_returns_the_same_status_and_posts_once(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        before = await post_count(fedi)
        async with client(fedi, tokens["bob"]) as http:
            sent = [await http.post("/api/v1/statuses", data={"status": "@tech once only"},
                                    headers={"Idempotency-Key": "k-1"}) for _ in range(2)]
        assert [a.status_code for a in sent] == [200, 200]
        assert sent[0].json()["id"] == sent[1].json()["id"]
        assert await post_count(fedi) == before + 1
        # The key is the token's own: another token's same key is another request.
        other = await token_for(fedi, "bob")
        async with client(fedi, other) as http:
            third = await http.post("/api/v1/statuses", data={"status": "@tech once only"},
                                    headers={"Idempotency-Key": "k-1"})
        assert third.json()["id"] != sent[0].json()["id"]
        assert await post_count(fedi) == before + 2


async def test_members_visibility_by_the_extension_is_private_on_the_wire_and_hidden_from_others(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        async with client(fedi, tokens["bob"]) as http:
            answer = await http.post("/api/v1/statuses", data={
                "status": "@tech members only", "visibility": "public",
                "fedi[visibility]": "members", "fedi[reply_policy]": "members"})
        secret = answer.json()
        assert secret["visibility"] == "private"
        assert secret["fedi"]["visibility"] == "members"
        assert secret["fedi"]["reply_policy"] == "members"
        top = await create(fedi, tokens["alice"], status="@tech open thread")
        hidden_reply = await create(fedi, tokens["bob"], status="just us", in_reply_to_id=top["id"],
                                    fedi={"visibility": "members"})
        assert hidden_reply["visibility"] == "private"
        async with client(fedi, tokens["carol"]) as http:
            refused = await http.get(f"/api/v1/statuses/{secret['id']}")
            assert refused.status_code == 404
            assert refused.json() == {"error": "Record not found"}
            for path in ("context", "history", "source", "favourited_by"):
                gone = await http.get(f"/api/v1/statuses/{secret['id']}/{path}")
                assert gone.status_code == 404, path
            assert (await http.post(f"/api/v1/statuses/{secret['id']}/favourite")
                    ).status_code == 404
            seen = (await http.get(f"/api/v1/statuses/{top['id']}/context")).json()
            assert seen["descendants"] == []
            listed = (await http.get("/api/v1/statuses", params={"id[]": secret["id"]})).json()
            assert listed == []
        async with client(fedi, tokens["alice"]) as http:
            seen = (await http.get(f"/api/v1/statuses/{top['id']}/context")).json()
            assert [s["id"] for s in seen["descendants"]] == [hidden_reply["id"]]


async def test_mastodon_public_in_a_private_group_becomes_members_only(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "alice")
        await make_group(fedi, "quiet", "alice", privacy="private")
        await join(fedi, "quiet", "alice")
        token = await token_for(fedi, "alice")
        status = await create(fedi, token, status="@quiet hello", visibility="public")
        assert status["fedi"]["visibility"] == "members"
        assert status["visibility"] == "private"
        async with client(fedi, token) as http:
            exact = await http.post("/api/v1/statuses", json={
                "status": "@quiet hello", "fedi": {"visibility": "public"}})
        assert exact.status_code == 422
        assert "private" in exact.json()["error"]


async def test_a_locked_thread_refuses_a_reply_with_the_reason(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        top = await create(fedi, tokens["alice"], status="@tech closing soon")
        async with fedi.services.sessionmaker() as session, session.begin():
            group = await find_local(session, "tech")
            post = await session.get(Post, int(top["id"]))
            assert group is not None and post is not None
            await set_locked(session, fedi.services.urls, group, post.uri, locked=True)
        before = await post_count(fedi)
        async with client(fedi, tokens["bob"]) as http:
            refused = await http.post("/api/v1/statuses", data={
                "status": "late reply", "in_reply_to_id": top["id"]})
        assert refused.status_code == 422
        assert "locked" in refused.json()["error"]
        assert await post_count(fedi) == before


async def test_premoderation_holds_the_status_shown_to_its_author_only(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        async with fedi.services.sessionmaker() as session, session.begin():
            group = await find_local(session, "tech")
            assert group is not None
            await update_settings(session, group, premoderation=True)
        held = await create(fedi, tokens["bob"], status="@tech please approve me")
        async with fedi.services.sessionmaker() as session:
            post = await session.get(Post, int(held["id"]))
            assert post is not None and post.held == "premoderation"
        async with client(fedi, tokens["bob"]) as http:
            assert (await http.get(f"/api/v1/statuses/{held['id']}")).status_code == 200
        async with client(fedi, tokens["carol"]) as http:
            assert (await http.get(f"/api/v1/statuses/{held['id']}")).status_code == 404


async def test_an_edit_shows_in_the_history_oldest_first(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        status = await create(fedi, tokens["bob"], status="@tech first words")
        async with client(fedi, tokens["bob"]) as http:
            path = f"/api/v1/statuses/{status['id']}"
            unedited = (await http.get(f"{path}/history")).json()
            assert [v["content"] for v in unedited] == [status["content"]]
            edited = await http.put(path, data={"status": "@tech better *words*"})
            assert edited.status_code == 200, edited.text
            assert "<em>words</em>" in edited.json()["content"]
            assert edited.json()["edited_at"] is not None
            versions = (await http.get(f"{path}/history")).json()
            assert [("first words" in v["content"], "better <em>words</em>" in v["content"])
                    for v in versions] == [(True, False), (True, True)]  # the title stays
            assert versions[0]["created_at"] == status["created_at"]
            assert all(v["account"]["username"] == "bob" for v in versions)
            assert (await http.get(f"{path}/source")).json()["text"] == "@tech better *words*"
        async with client(fedi, tokens["alice"]) as http:
            other = await http.put(path, data={"status": "not mine"})
            assert other.status_code == 403


async def test_delete_answers_the_source_and_the_status_is_gone(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        status = await create(fedi, tokens["bob"], status="@tech oops *typo*")
        path = f"/api/v1/statuses/{status['id']}"
        async with client(fedi, tokens["alice"]) as http:
            assert (await http.delete(path)).status_code == 403
        async with client(fedi, tokens["bob"]) as http:
            deleted = await http.delete(path)
            assert deleted.status_code == 200
            assert deleted.json()["id"] == status["id"]
            assert deleted.json()["text"] == "@tech oops *typo*"
            assert (await http.get(path)).status_code == 404
            assert (await http.delete(path)).status_code == 404
        async with fedi.services.sessionmaker() as session:
            post = await session.get(Post, int(status["id"]))
            assert post is not None and post.deleted_at is not None


async def test_bad_statuses_are_422_with_a_reason_and_nothing_is_posted(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        tokens = await community(fedi)
        before = await post_count(fedi)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"status": "   "}, "empty"),
            ({"status": "@tech hi", "visibility": "friends-only"}, "unknown visibility"),
            ({"status": "@tech " + "x" * 60_000}, "longer than"),
            ({"status": "hello world"}, "mention a group"),
            ({"status": "@tech hi", "media_ids": ["1"]}, "attachments"),
            ({"status": "@tech hi", "poll": {"options": ["a", "b"], "expires_in": 60}},
             "polls"),
            ({"status": "@tech hi", "fedi": {"reply_policy": "everyone"}}, "reply rule"),
            ({"status": "@tech hi", "fedi": {"visibility": "mentioned"}}, "mention someone"),
        ]
        async with client(fedi, tokens["bob"]) as http:
            for body, reason in cases:
                answer = await http.post("/api/v1/statuses", json=body)
                assert answer.status_code == 422, body
                assert reason in answer.json()["error"], (body, answer.json())
            missing = await http.post("/api/v1/statuses", json={
                "status": "hi", "in_reply_to_id": "424242"})
            assert missing.status_code == 404
        async with client(fedi, tokens["carol"]) as http:
            outsider = await http.post("/api/v1/statuses", json={"status": "@tech let me in"})
            assert outsider.status_code == 422
            assert "carol may not post in tech" in outsider.json()["error"]
        read_only = await token_for(fedi, "bob", "read")
        async with client(fedi, read_only) as http:
            assert (await http.post("/api/v1/statuses", json={"status": "@tech hi"})
                    ).status_code == 403
        assert await post_count(fedi) == before
