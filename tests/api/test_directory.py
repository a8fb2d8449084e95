"""The profile directory lists this server's people and groups, never a hidden group."""

from __future__ import annotations

from tests.api.support import api_app, client, make_group, make_user, write_post


async def test_the_directory_lists_people_and_open_groups_not_hidden_ones(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        town = await make_group(fedi, "town", "owner")
        await make_group(fedi, "secret", "owner", privacy="hidden")
        await make_user(fedi, "quiet")
        await write_post(fedi, "owner", town, "@town hello")
        async with client(fedi, None) as http:
            active = await http.get("/api/v1/directory?local=true")
            assert active.status_code == 200, active.text
            names = [a["acct"] for a in active.json()]
            assert set(names) == {"owner", "town", "quiet"}
            assert names[0] == "owner"  # the most recent post
            assert next(a for a in active.json() if a["acct"] == "town")["group"] is True
            newest = [a["acct"] for a in (await http.get("/api/v1/directory?order=new")).json()]
            assert newest[0] == "quiet"
            paged = await http.get("/api/v1/directory?order=new&offset=1&limit=1")
            assert [a["acct"] for a in paged.json()] == [newest[1]]
            assert (await http.get("/api/v1/directory?order=odd")).status_code == 422
            assert (await http.get("/api/v1/instance/translation_languages")).json() == {}
