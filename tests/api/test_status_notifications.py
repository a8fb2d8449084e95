"""Following an account with `notify: true` (the bell in Mastodon apps) brings a `status`
notification for each of its new posts the person may see; unfollowing or notify=false
stops them, and the relationship says `notifying`."""

from __future__ import annotations

from tests.api.support import (
    api_app,
    client,
    join_group,
    make_group,
    make_user,
    token_for,
    write_post,
)


async def test_a_follow_with_notify_tells_of_new_posts_the_person_may_see(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        town = await make_group(fedi, "town", "owner")
        club = await make_group(fedi, "club", "owner")
        await join_group(fedi, "bob", town)
        await join_group(fedi, "mia", town)
        bob_id = str((await make_user(fedi, "bob")).id)
        async with client(fedi, await token_for(fedi, "mia")) as http:
            followed = await http.post(f"/api/v1/accounts/{bob_id}/follow",
                                       json={"notify": True})
            assert followed.status_code == 200, followed.text
            assert followed.json()["following"] and followed.json()["notifying"]
            seen = await write_post(fedi, "bob", town, "@town news")
            # bob posts where mia may not look: she is not told.
            await join_group(fedi, "bob", club)
            await write_post(fedi, "bob", club, "@club members only", visibility="members")
            told = (await http.get("/api/v1/notifications?types[]=status")).json()
            assert [(n["type"], n["status"]["id"], n["account"]["id"]) for n in told] == [
                ("status", str(seen.id), bob_id)]
            quiet = await http.post(f"/api/v1/accounts/{bob_id}/follow",
                                    data={"notify": "false"})
            assert quiet.json()["following"] and not quiet.json()["notifying"]
            await write_post(fedi, "bob", town, "@town more news")
            assert len((await http.get("/api/v1/notifications?types[]=status")).json()) == 1
            again = await http.post(f"/api/v1/accounts/{bob_id}/follow", json={"notify": True})
            assert again.json()["notifying"]
            await http.post(f"/api/v1/accounts/{bob_id}/unfollow")
            rel = (await http.get(f"/api/v1/accounts/relationships?id[]={bob_id}")).json()
            assert rel[0]["notifying"] is False and rel[0]["following"] is False
            await write_post(fedi, "bob", town, "@town after unfollow")
            assert len((await http.get("/api/v1/notifications?types[]=status")).json()) == 1
