"""Endpoints for features fedi does not have answer well-formed and empty (never a 404 an
app would hang on), each behind the scope Mastodon asks for; push says plainly it is not
here."""

from __future__ import annotations

import pytest

from tests.api.support import api_app, client, make_user, token_for

# path → the scope Mastodon needs (None: any token; "public": none at all)
EMPTY = {
    "/api/v1/lists": "read:lists",
    "/api/v1/filters": "read:filters",
    "/api/v2/filters": "read:filters",
    "/api/v1/announcements": None,
    "/api/v1/custom_emojis": "public",
    "/api/v1/trends": "public",
    "/api/v1/trends/tags": "public",
    "/api/v1/trends/statuses": "public",
    "/api/v1/trends/links": "public",
    "/api/v1/followed_tags": "read:follows",
    "/api/v1/conversations": "read:statuses",
    "/api/v1/suggestions": "read",
    "/api/v2/suggestions": "read",
    "/api/v1/domain_blocks": "read:blocks",
    "/api/v1/featured_tags": "read:accounts",
    "/api/v1/endorsements": "read:accounts",
    "/api/v1/scheduled_statuses": "read:statuses",
}


async def test_every_placeholder_answers_an_empty_list_to_the_right_scope_only(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "alice")
        full = await token_for(fedi, "alice")
        push_only = await token_for(fedi, "alice", "push")
        async with client(fedi, full) as http, client(fedi, push_only) as narrow, client(
                fedi, None) as anonymous:
            for path, scope in EMPTY.items():
                answer = await http.get(path)
                assert answer.status_code == 200, path
                assert answer.json() == [], path
                assert answer.headers["content-type"].startswith("application/json"), path
                anon = await anonymous.get(path)
                if scope == "public":
                    assert anon.status_code == 200 and anon.json() == [], path
                else:
                    assert anon.status_code == 401 and "error" in anon.json(), path
                if scope not in (None, "public"):
                    refused = await narrow.get(path)
                    assert refused.status_code == 403, path
                    assert scope.split(":")[0] in refused.json()["error"], path
                # No redirect for a trailing slash (an app would not follow it).
                assert (await http.get(path + "/")).status_code != 301, path


async def test_preferences_carry_every_key_apps_read(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        async with client(fedi, await token_for(fedi, "alice")) as http:
            answer = await http.get("/api/v1/preferences")
            assert answer.status_code == 200
            assert answer.json() == {
                "posting:default:visibility": "public",
                "posting:default:sensitive": False,
                "posting:default:language": None,
                "reading:expand:media": "default",
                "reading:expand:spoilers": False,
            }
        async with client(fedi, await token_for(fedi, None)) as app_only:
            refused = await app_only.get("/api/v1/preferences")
            assert refused.status_code == 422
            assert "authenticated user" in refused.json()["error"]


@pytest.mark.parametrize(("method", "status"), [
    ("GET", 404), ("PUT", 404), ("POST", 422), ("DELETE", 200)])
async def test_push_subscriptions_answer_as_mastodon_does_without_one(
    database_url: str, method: str, status: int,
) -> None:
    async with api_app(database_url) as fedi:
        async with client(fedi, await token_for(fedi, "alice")) as http:
            answer = await http.request(method, "/api/v1/push/subscription")
            assert answer.status_code == status
            body = answer.json()
            if status == 404:
                assert body == {"error": "Record not found"}
            elif status == 422:
                assert "push is not supported" in body["error"]
            else:
                assert body == {}
        async with client(fedi, await token_for(fedi, "alice", "read")) as narrow:
            assert (await narrow.get("/api/v1/push/subscription")).status_code == 403
