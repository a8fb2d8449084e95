"""Search: accounts by name here, an address or link resolved on its server only with
resolve=true and a person's token, posts by link or text through the privacy gate, hidden
groups found by their members only, and a clear 422 for what cannot be searched."""

from __future__ import annotations

from fedi.actors.local import find_local
from fedi.groups.membership import join_local_group
from fedi.groups.posting import post_to_group
from fedi.store.models import Post
from tests.api.support import api_app, client, make_group, make_user, token_for
from tests.support.app import InProcess
from tests.support.remote import FakeRemote


async def _post(fedi: InProcess, author: str, group: str, text: str,
                visibility: str | None = None) -> Post:
    async with fedi.services.sessionmaker() as session, session.begin():
        person, place = await find_local(session, author), await find_local(session, group)
        assert person is not None and place is not None
        return (await post_to_group(session, fedi.services.urls, person, place, text,
                                    title=text, visibility=visibility)).post


async def test_accounts_by_name_and_hidden_groups_only_for_members(database_url: str
                                                                   ) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        await make_user(fedi, "gardener")
        await make_group(fedi, "gardens", "owner")
        secret = await make_group(fedi, "gardenclub", "owner", privacy="hidden")
        async with client(fedi, await token_for(fedi, "eve")) as http:
            found = (await http.get("/api/v2/search", params={"q": "garden"})).json()
            assert sorted(a["username"] for a in found["accounts"]) == ["gardener", "gardens"]
            assert found["hashtags"] == []
            listed = (await http.get("/api/v1/accounts/search", params={"q": "@gard"})).json()
            assert sorted(a["username"] for a in listed) == ["gardener", "gardens"]
            one = (await http.get("/api/v1/accounts/search",
                                  params={"q": "garden", "limit": "1"})).json()
            assert len(one) == 1
        async with client(fedi, await token_for(fedi, "owner")) as http:
            found = (await http.get("/api/v2/search", params={"q": "garden"})).json()
            assert str(secret.id) in [a["id"] for a in found["accounts"]]
        async with client(fedi, None) as http:  # anonymous: public accounts only
            found = (await http.get("/api/v2/search", params={"q": "gardenc"})).json()
            assert found["accounts"] == []


async def test_statuses_by_link_or_text_pass_the_gate(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        await make_group(fedi, "town", "owner")
        open_post = await _post(fedi, "owner", "town", "Tomatoes in spring")
        inner = await _post(fedi, "owner", "town", "Tomatoes for members", "members")
        mia = await make_user(fedi, "mia")
        async with fedi.services.sessionmaker() as session, session.begin():
            town = await find_local(session, "town")
            assert town is not None
            row = await join_local_group(session, fedi.services.urls, town,
                                         await session.merge(mia))
            row.state = "accepted"
        async with client(fedi, await token_for(fedi, "eve")) as http:
            by_text = (await http.get("/api/v2/search", params={
                "q": "tomatoes", "type": "statuses"})).json()
            assert [s["id"] for s in by_text["statuses"]] == [str(open_post.id)]
            assert by_text["accounts"] == []
            by_link = (await http.get("/api/v2/search", params={"q": inner.uri})).json()
            assert by_link["statuses"] == []
        async with client(fedi, await token_for(fedi, "mia")) as http:
            by_text = (await http.get("/api/v2/search", params={
                "q": "TOMATOES", "type": "statuses"})).json()
            assert [s["id"] for s in by_text["statuses"]] == [str(inner.id), str(open_post.id)]
            by_link = (await http.get("/api/v2/search", params={"q": inner.uri})).json()
            assert [s["id"] for s in by_link["statuses"]] == [str(inner.id)]
            wildcard = (await http.get("/api/v2/search", params={
                "q": "%", "type": "statuses"})).json()
            assert wildcard["statuses"] == []  # % is a character here, not a pattern


async def test_a_remote_account_is_fetched_only_with_resolve_and_a_person(database_url: str
                                                                          ) -> None:
    remote = FakeRemote()
    remote.add_actor("rita")
    await remote.start()
    try:
        async with api_app(database_url) as fedi:
            handle = f"@rita@127.0.0.1:{remote.port}"
            async with client(fedi, None) as http:
                anonymous = (await http.get("/api/v2/search", params={
                    "q": handle, "resolve": "true"})).json()
                assert anonymous["accounts"] == [] and remote.fetches["rita"] == 0
            async with client(fedi, await token_for(fedi, "mia")) as http:
                unresolved = (await http.get("/api/v2/search", params={"q": handle})).json()
                assert unresolved["accounts"] == [] and remote.fetches["rita"] == 0
                resolved = (await http.get("/api/v2/search", params={
                    "q": handle, "resolve": "true"})).json()
                assert [a["acct"] for a in resolved["accounts"]] == [
                    f"rita@127.0.0.1:{remote.port}"]
                assert resolved["accounts"][0]["group"] is False
                by_link = (await http.get("/api/v2/search", params={
                    "q": remote.actors["rita"].uri})).json()  # known now: no fetch needed
                assert [a["acct"] for a in by_link["accounts"]] == [
                    f"rita@127.0.0.1:{remote.port}"]
                nobody = (await http.get("/api/v2/search", params={
                    "q": f"@nobody@127.0.0.1:{remote.port}", "resolve": "true"})).json()
                assert nobody["accounts"] == []
    finally:
        await remote.stop()


async def test_bad_parameters_are_refused_with_the_reason(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        async with client(fedi, await token_for(fedi, "mia")) as http:
            missing = await http.get("/api/v2/search")
            assert missing.status_code == 422 and "q is required" in missing.json()["error"]
            kind = await http.get("/api/v2/search", params={"q": "x", "type": "people"})
            assert kind.status_code == 422 and "type" in kind.json()["details"]
            flag = await http.get("/api/v2/search", params={"q": "x", "resolve": "perhaps"})
            assert flag.status_code == 422
            limit = await http.get("/api/v2/search", params={"q": "x", "limit": "ten"})
            assert limit.status_code == 422
            assert (await http.get("/api/v1/search", params={"q": "x"})).status_code == 404
        async with client(fedi, await token_for(fedi, "mia", "read:statuses")) as http:
            assert (await http.get("/api/v2/search", params={"q": "x"})).status_code == 403
