"""Mastodon.py 2.3, the Python library most Mastodon bots use, against two real fedi servers:
an app is registered, a person signs in with a password and through the consent page in a
real browser, joins a group on another server, posts and replies there, favourites, reads
the thread, home and notifications, and gets a reply over the streaming API. A client that
checks the server's version before every call ("created") works throughout."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from mastodon import (
    Mastodon,
    MastodonIllegalArgumentError,
    MastodonNotFoundError,
    MastodonUnauthorizedError,
    StreamListener,
)

from tests.clients import shapes
from tests.clients.support import (
    OOB,
    PASSWORD,
    SCOPES,
    World,
    authorize_in_browser,
    marker,
)
from tests.support.instance import eventually

pytestmark = pytest.mark.federation


class Collector(StreamListener):  # type: ignore[misc]
    """What arrives on the user stream, from the stream's own thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def on_update(self, status: Any) -> None:
        with self.lock:
            self.events.append(("update", status))

    def on_notification(self, notification: Any) -> None:
        with self.lock:
            self.events.append(("notification", notification))

    def carrying(self, text: str) -> list[str]:
        with self.lock:
            kinds = []
            for kind, entity in self.events:
                status = entity.get("status") if kind == "notification" else entity
                if status and text in content_of(status):
                    kinds.append(kind)
            return kinds


def content_of(status: Any) -> str:
    inner = status.get("reblog") or status
    return str(inner.get("content") or "")


def find(statuses: list[Any], text: str) -> Any | None:
    """The status (the original, if the group boosted it) whose content contains text."""
    for status in statuses:
        if text in content_of(status):
            return status.get("reblog") or status
    return None


def client(world: World, **options: Any) -> Mastodon:
    return Mastodon(api_base_url=world.a.base_url, ratelimit_method="throw",
                    request_timeout=30, **options)


async def test_mastodon_py_signs_in_joins_a_remote_group_posts_and_streams(
    world: World,
) -> None:
    base = world.a.base_url

    # An app, registered as Mastodon.py does it (a form; out-of-band redirect).
    client_id, client_secret = Mastodon.create_app(
        "fedi client test (Mastodon.py)", scopes=SCOPES, redirect_uris=OOB, api_base_url=base)
    assert client_id and client_secret

    # The password grant: Mastodon.py refuses it unless the server lists it, and fails
    # unless the token grants every scope asked for.
    by_password = client(world, client_id=client_id, client_secret=client_secret)
    with pytest.raises(MastodonIllegalArgumentError, match="invalid_grant"):
        by_password.log_in(world.user, "not the password", scopes=SCOPES, allow_http=True)
    by_password.log_in(world.user, PASSWORD, scopes=SCOPES, allow_http=True)
    assert by_password.account_verify_credentials()["username"] == world.user

    # The authorization-code flow: the person authorises the app on the consent page.
    by_code = client(world, client_id=client_id, client_secret=client_secret)
    url = by_code.auth_request_url(redirect_uris=OOB, scopes=SCOPES, allow_http=True)
    code = (await authorize_in_browser(world, url, OOB)).code
    token = by_code.log_in(code=code, redirect_uri=OOB, scopes=SCOPES, allow_http=True)
    assert token != by_password.access_token

    # A version-checked client connects and every call below passes its version checks.
    tess = client(world, access_token=token, version_check_mode="created")
    me = tess.account_verify_credentials()
    assert me["username"] == world.user and me["acct"] == world.user
    assert me["source"]["privacy"] in ("public", "unlisted", "private", "direct")
    assert tess.verify_minimum_version("4.0.0", cached=True)

    v1 = tess.instance_v1()
    assert v1["uri"] == world.a.domain, v1
    v2 = tess.instance_v2()
    assert v2["domain"] == world.a.domain, v2
    assert v2["configuration"]["urls"]["streaming"], v2

    # Find the group on B by its handle (resolved over WebFinger) and join it.
    found = tess.search_v2(world.group_handle, resolve=True, result_type="accounts")
    assert len(found["accounts"]) == 1, found
    group = found["accounts"][0]
    assert group["group"] is True and group["acct"] == world.group_handle[1:], group
    relation = tess.account_follow(group["id"])
    assert relation["following"] or relation["requested"], relation
    await eventually(lambda: tess.account_relationships(group["id"])[0]["following"],
                     timeout=60, what="B accepted the join (relationship following)")

    # A thread opened on B reaches the home timeline on A.
    welcome = marker("welcome")
    thread_uri = await world.owner_posts_thread("Welcome", f"Say hello {welcome}")
    thread = await eventually(lambda: find(tess.timeline_home(), welcome), timeout=60,
                              what="bo's thread in tess's home timeline")
    assert thread["uri"] == thread_uri, thread
    assert thread["account"]["acct"] == f"{world.owner}@{world.b.domain}", thread["account"]

    # Posting into the group: a status that mentions it reaches B's group. Sent twice with
    # one Idempotency-Key (as Mastodon.py retries do), it is one status.
    hello = marker("hello")
    text = f"{world.group_handle} Hello from Mastodon.py {hello}"
    mine = tess.status_post(text, visibility="public", idempotency_key=hello)
    assert tess.status_post(text, visibility="public", idempotency_key=hello)["id"] == mine["id"]
    assert hello in mine["content"], mine
    assert any(m["acct"] == world.group_handle[1:] for m in mine["mentions"]), mine
    assert await world.wait_for_post_on_b(hello) == mine["uri"]

    # A reply in bo's thread, and the thread read back from the reply.
    answer = marker("answer")
    reply = tess.status_reply(thread, f"On the radiator {answer}")
    assert str(reply["in_reply_to_id"]) == str(thread["id"]), reply
    context = tess.status_context(reply["id"])
    assert [s["id"] for s in context["ancestors"]] == [thread["id"]], context
    assert await world.wait_for_post_on_b(answer) == reply["uri"]

    # Edit the post: the new text reaches B, the history holds both versions (the official
    # app hangs when history answers 404), the source is the text as typed.
    edited = marker("edited")
    changed = tess.status_update(mine["id"], f"{world.group_handle} Hello again {edited}")
    assert edited in changed["content"] and changed["edited_at"] is not None, changed
    assert await world.wait_for_post_on_b(edited) == mine["uri"]
    history = tess.status_history(mine["id"])
    assert [hello in v["content"] or edited in v["content"] for v in history] == [True, True]
    assert edited in tess.status_source(mine["id"])["text"]

    # Bookmark the reply; the bookmarks list has it.
    assert tess.status_bookmark(reply["id"])["bookmarked"] is True
    assert [s["id"] for s in tess.bookmarks()] == [reply["id"]]

    # What apps read at start and stall on when it is missing: all there, empty or not.
    assert isinstance(tess.preferences(), dict)
    for optional in (tess.announcements, tess.filters, tess.filters_v2, tess.lists,
                     tess.followed_tags, tess.follow_requests, tess.custom_emojis,
                     tess.trending_tags):
        assert isinstance(optional(), list), optional.__name__
    assert isinstance(tess.markers_get(["home", "notifications"]), dict)

    # Favourite bo's thread.
    liked = tess.status_favourite(thread["id"])
    assert liked["favourited"] is True and liked["favourites_count"] >= 1, liked
    assert tess.status(thread["id"])["favourited"] is True

    # The user stream gets bo's reply to tess's post, sent from B.
    collector = Collector()
    stream = tess.stream_user(collector, run_async=True, reconnect_async=False)
    try:
        await eventually(stream.is_receiving, timeout=30, what="the user stream connected")
        back = marker("back")
        reply_uri = await world.owner_replies(mine["uri"], f"Hello yourself {back}")
        kinds = await eventually(lambda: collector.carrying(back), timeout=60,
                                 what="bo's reply on tess's user stream")
        assert set(kinds) <= {"update", "notification"}
    finally:
        stream.close()

    # The same reply in notifications and in the thread of tess's post.
    notices = tess.notifications()
    notice = next((n for n in notices if n.get("status") and back in n["status"]["content"]),
                  None)
    assert notice is not None, notices
    assert notice["type"] == "mention", notice
    assert notice["account"]["acct"] == f"{world.owner}@{world.b.domain}", notice
    assert notice["status"]["uri"] == reply_uri
    below = tess.status_context(mine["id"])["descendants"]
    assert [s["uri"] for s in below] == [reply_uri], below

    # What the strict clients would decode of the same things, read as raw JSON.
    version = await shapes.check_wire(
        base, token, statuses=[str(thread["id"]), str(mine["id"]), str(reply["id"])],
        accounts=[str(group["id"]), str(notice["account"]["id"])])
    if version >= 2:  # then Phanpy reads grouped notifications
        assert "notification_groups" in tess.grouped_notifications()

    # Home still shows the thread tess took part in, and pages through the Link header:
    # one status a page, the next page older, the previous page back to the first.
    assert find(tess.timeline_home(), welcome) is not None
    first = tess.timeline_home(limit=1)
    second = tess.fetch_next(first)
    assert len(first) == 1 and second is not None and len(second) == 1, (first, second)
    assert second[0]["id"] != first[0]["id"]
    assert second[0]["created_at"] <= first[0]["created_at"]
    previous = tess.fetch_previous(second)
    assert previous is not None and [s["id"] for s in previous] == [first[0]["id"]], previous

    # Errors come back as Mastodon's JSON, which Mastodon.py turns into its exceptions.
    with pytest.raises(MastodonNotFoundError):
        tess.status("999999999")

    # Signing out ends that token only. (A "changed" version check is left out: with
    # fedi answering as Mastodon 4.2.0 it refuses e.g. me(), whose Account changed in 4.7.)
    by_password.revoke_access_token(allow_http=True)
    with pytest.raises(MastodonUnauthorizedError):
        by_password.account_verify_credentials()
    assert tess.account_verify_credentials()["username"] == world.user

    # Delete and redraft: the deleted status comes back with its text; B drops it.
    gone = tess.status_delete(mine["id"])
    assert edited in gone["text"], gone
    await eventually(lambda: _gone(world, edited), timeout=60, what="the post deleted on B")
    with pytest.raises(MastodonNotFoundError):
        tess.status(mine["id"])

    # Leaving the group (unfollow) reaches B.
    assert tess.account_unfollow(group["id"])["following"] is False
    await eventually(lambda: _left(world), timeout=60, what="tess no longer a member on B")


async def _gone(world: World, text: str) -> bool:
    return await world.group_has_post(text) is None


async def _left(world: World) -> bool:
    rows = await world.b.query(
        "SELECT f.state FROM follows f JOIN actors p ON p.id = f.follower_id "
        "JOIN actors g ON g.id = f.target_id WHERE p.username = :user AND NOT p.local "
        "AND g.username = :group AND g.local", user=world.user, group=world.group)
    return not rows
