"""What the strict clients (Tusky, Ice Cubes, Elk) need in each entity, or they fail to decode
the whole response: the lists of /work/shared/CLIENT-API.md, from those clients' sources.
Those clients cannot run here, so the JSON itself is checked as it comes over the wire:
Mastodon.py is no judge of it (it fills in every missing field and wraps every id in a str
subclass)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

VISIBILITIES = {"public", "unlisted", "private", "direct"}
ACCOUNT = ("id", "username", "acct", "display_name", "url", "note", "avatar", "avatar_static",
           "header", "header_static", "created_at", "locked", "bot", "group", "discoverable",
           "fields", "emojis", "followers_count", "following_count", "statuses_count")
NEVER_NULL = ("avatar", "avatar_static", "header", "header_static")
STATUS = ("id", "uri", "url", "created_at", "account", "content", "visibility", "sensitive",
          "spoiler_text", "media_attachments", "mentions", "tags", "emojis", "replies_count",
          "reblogs_count", "favourites_count", "in_reply_to_id", "in_reply_to_account_id",
          "reblog", "application")
INSTANCE_V1 = ("uri", "title", "email", "version", "short_description", "description", "stats",
               "registrations")
INSTANCE_V2 = ("domain", "version", "title", "description", "registrations", "configuration")


def missing(entity: Mapping[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [key for key in keys if key not in entity]


def check_account(account: Mapping[str, Any]) -> None:
    assert not missing(account, ACCOUNT), (missing(account, ACCOUNT), account)
    assert isinstance(account["id"], str), account["id"]
    empty = [key for key in NEVER_NULL if not account[key]]
    assert not empty, f"{account['acct']}: {empty} empty (serve a default image)"


def check_status(status: Mapping[str, Any]) -> None:
    assert not missing(status, STATUS), (missing(status, STATUS), status)
    assert isinstance(status["id"], str), status["id"]
    assert status["visibility"] in VISIBILITIES, status["visibility"]
    check_account(status["account"])
    if status["reblog"]:
        check_status(status["reblog"])


def check_instances(v1: Mapping[str, Any], v2: Mapping[str, Any]) -> int:
    """Both instance documents hold what clients decode; returns the Mastodon API version
    claimed (Phanpy switches to /api/v2/notifications at 2)."""
    assert not missing(v1, INSTANCE_V1), missing(v1, INSTANCE_V1)
    assert not missing(v1["stats"], ("user_count", "status_count", "domain_count")), v1["stats"]
    assert isinstance(v1["registrations"], bool), v1["registrations"]
    if "configuration" in v1:  # Ice Cubes decodes these when the object is there
        statuses = v1["configuration"]["statuses"]
        assert not missing(statuses, ("max_characters", "max_media_attachments")), statuses
        assert len(v1["configuration"]["polls"]) >= 4, v1["configuration"]["polls"]
    assert not missing(v2, INSTANCE_V2), missing(v2, INSTANCE_V2)
    assert not missing(v2["registrations"], ("enabled", "approval_required")), v2
    assert isinstance(v2["configuration"]["urls"], Mapping), v2["configuration"]
    if "accounts" in v2["configuration"]:  # Tusky
        assert "max_featured_tags" in v2["configuration"]["accounts"], v2["configuration"]
    assert v2["version"][:1].isdigit(), v2["version"]  # Mastodon.py reads N.N.N first
    return int((v2.get("api_versions") or {}).get("mastodon", 0))


SOURCE = ("privacy", "sensitive", "language", "note", "fields")
NOTIFICATION = ("id", "type", "created_at", "account")


async def check_wire(base_url: str, token: str, *, statuses: Iterable[str],
                     accounts: Iterable[str]) -> int:
    """Read the instance, the caller, the given statuses and accounts, home and
    notifications as raw JSON and check each; returns the claimed Mastodon API version."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as http:

        async def get(path: str) -> Any:
            answer = await http.get(path)
            assert answer.status_code == 200, (path, answer.status_code, answer.text)
            return answer.json()

        version = check_instances(await get("/api/v1/instance"), await get("/api/v2/instance"))
        me = await get("/api/v1/accounts/verify_credentials")
        check_account(me)
        assert not missing(me["source"], SOURCE), me["source"]
        for account in accounts:
            check_account(await get(f"/api/v1/accounts/{account}"))
        for status in statuses:
            check_status(await get(f"/api/v1/statuses/{status}"))
        home = await get("/api/v1/timelines/home")
        assert home, "home is empty"
        for status in home:
            check_status(status)
        notices = await get("/api/v1/notifications")
        assert notices, "no notifications"
        for notice in notices:
            assert not missing(notice, NOTIFICATION), notice
            assert isinstance(notice["id"], str), notice["id"]
            check_account(notice["account"])
            if notice.get("status"):
                check_status(notice["status"])
        return version
