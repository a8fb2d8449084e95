"""Issue 10's privacy line, in one place: a members-only post (and a members-only reply in a
public thread) is absent from every read of a non-member's token — home, public, local and
hashtag timelines, the group's and the author's statuses, the status itself, its context,
search, favourited_by, bookmarks — and present for a member's. (Streams: test_streaming.)"""

from __future__ import annotations

import httpx

from tests.api.support import (
    api_app,
    client,
    join_group,
    make_group,
    make_user,
    token_for,
    write_post,
)


def _ids(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {s["id"] for s in (body["statuses"] if isinstance(body, dict) else body)}


async def _everything(http: httpx.AsyncClient, group_id: str, author_id: str,
                      public_id: str, secret_id: str) -> set[str]:
    """Every id one token reads about the group, over every read path."""
    seen: set[str] = set()
    for path in ("/api/v1/timelines/home", "/api/v1/timelines/public",
                 "/api/v1/timelines/public?local=true", "/api/v1/timelines/tag/moonbeam",
                 f"/api/v1/accounts/{group_id}/statuses",
                 f"/api/v1/accounts/{author_id}/statuses",
                 "/api/v2/search?q=moonbeam&type=statuses", "/api/v1/bookmarks",
                 "/api/v1/favourites"):
        seen |= _ids(await http.get(path))
    context = await http.get(f"/api/v1/statuses/{public_id}/context")
    assert context.status_code == 200
    seen |= {s["id"] for s in context.json()["descendants"]}
    direct = await http.get(f"/api/v1/statuses/{secret_id}")
    if direct.status_code == 200:
        seen.add(direct.json()["id"])
    else:
        assert direct.status_code == 404 and direct.json() == {"error": "Record not found"}
    many = await http.get(f"/api/v1/statuses?id[]={secret_id}&id[]={public_id}")
    if many.status_code == 200:
        seen |= {s["id"] for s in many.json()}
    liked = await http.get(f"/api/v1/statuses/{secret_id}/favourited_by")
    if liked.status_code == 200:
        seen.add(secret_id)
    return seen


async def test_a_members_only_post_reaches_members_on_every_path_and_no_one_else(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        group = await make_group(fedi, "town", "owner")
        await join_group(fedi, "mia", group)
        await make_user(fedi, "nick")  # not a member
        thread = await write_post(fedi, "owner", group, "Public moonbeam #moonbeam")
        secret = await write_post(fedi, "owner", group, "Members moonbeam #moonbeam",
                                  visibility="members")
        secret_reply = await write_post(fedi, "mia", group, "Members reply moonbeam #moonbeam",
                                        visibility="members", reply_to=thread)
        owner_token, mia, nick = (await token_for(fedi, "owner"), await token_for(fedi, "mia"),
                                  await token_for(fedi, "nick"))
        async with client(fedi, owner_token) as http:
            owner_id = (await http.get("/api/v1/accounts/verify_credentials")).json()["id"]
        async with client(fedi, mia) as http:
            for post in (secret, secret_reply):  # the member marks both, so lists hold them
                assert (await http.post(f"/api/v1/statuses/{post.id}/favourite")).status_code == 200
                assert (await http.post(f"/api/v1/statuses/{post.id}/bookmark")).status_code == 200
            member_sees = await _everything(http, str(group.id), owner_id, str(thread.id),
                                            str(secret.id))
        async with client(fedi, nick) as http:
            # Following the author does not open the group's members-only posts.
            assert (await http.post(f"/api/v1/accounts/{owner_id}/follow")).status_code == 200
            for post in (secret, secret_reply):
                refused = await http.post(f"/api/v1/statuses/{post.id}/favourite")
                assert refused.status_code == 404
            outsider_sees = await _everything(http, str(group.id), owner_id, str(thread.id),
                                              str(secret.id))
        async with client(fedi, None) as http:
            anonymous_sees: set[str] = set()
            for path in ("/api/v1/timelines/public", "/api/v1/timelines/tag/moonbeam",
                         f"/api/v1/accounts/{group.id}/statuses"):
                anonymous_sees |= _ids(await http.get(path))
        hidden = {str(secret.id), str(secret_reply.id)}
        assert hidden <= member_sees
        assert str(thread.id) in outsider_sees and str(thread.id) in anonymous_sees
        assert not hidden & outsider_sees
        assert not hidden & anonymous_sees
