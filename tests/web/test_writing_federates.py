"""Two real fedi processes: what a person writes and joins in the browser federates exactly
as the same thing done with the CLI (real HTTP, real signatures, real delivery workers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.accounts.support import log_in, sign_up, token_in
from tests.support.instance import FediInstance, eventually
from tests.web.writing_support import nonce_in

pytestmark = pytest.mark.federation
# Cheap password hashing: these tests are about federation, not hashing.
FAST = {"FEDI_PASSWORD_TIME_COST": "1", "FEDI_PASSWORD_MEMORY_KIB": "1024"}


@asynccontextmanager
async def signed_in(instance: FediInstance, name: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=instance.base_url, timeout=30) as http:
        assert (await sign_up(http, name)).status_code == 303
        assert (await log_in(http, name)).status_code == 303
        yield http


async def _one(instance: FediInstance, sql: str, **params: Any) -> Any:
    found = await instance.query(sql, **params)
    return found[0] if found else None


async def _member(instance: FediInstance, user: str, group: str) -> bool:
    row = await _one(instance, "SELECT f.state FROM follows f JOIN actors u ON "
                     "u.id = f.follower_id JOIN actors g ON g.id = f.target_id "
                     "WHERE u.username = :user AND g.uri = :group",
                     user=user, group=group)
    return row is not None and row[0] == "accepted"


POST = ("SELECT p.content, p.visibility, p.in_reply_to, p.thread_id, g.uri, a.uri "
        "FROM posts p JOIN actors g ON g.id = p.group_id JOIN actors a ON a.id = p.author_id "
        "WHERE p.uri = :uri")


async def test_a_web_reply_reaches_another_server_as_a_cli_reply_does(
    instances: list[FediInstance],
) -> None:
    a, b, _ = instances
    for instance in (a, b):
        instance.cli("admin", "registrations", "open")
        instance.start(env=FAST)
    a.cli("create-user", "alice")
    club = a.cli("create-group", "club", "--owner", "alice").stdout.strip()

    async with signed_in(b, "bea") as bea, signed_in(a, "carl") as carl:
        # Bea, on B, joins A's group from B's pages: B sends the Follow `fedi follow` sends.
        page = await bea.get("/join", params={"group": club})
        assert page.status_code == 200 and "another server" in page.text
        sent = await bea.post("/join", data={"csrf": token_in(page), "group": club})
        assert sent.status_code == 200, sent.text
        await eventually(lambda: _member(b, "bea", club), what="bea joined on B")
        await eventually(lambda: _member(a, "bea", club), what="A lists bea")
        # Carl, on A, joins from A's pages.
        join = await carl.get("/groups/club/join")
        assert (await carl.post("/groups/club/join",
                                data={"csrf": token_in(join)})).status_code == 303

        thread = a.cli("post", "--as", "alice", "--group", "club", "--title", "Naps",
                       "Where do your cats sleep?").stdout.strip()
        thread_id = (await _one(a, "SELECT id FROM posts WHERE uri = :uri", uri=thread))[0]
        on_b = await eventually(lambda: _one(b, POST, uri=thread), what="thread on B")

        # The same reply, once from the browser and once from the CLI.
        form = await carl.get(f"/posts/{thread_id}/reply")
        done = await carl.post(f"/posts/{thread_id}/reply", data={
            "csrf": token_in(form), "nonce": nonce_in(form), "body": "On the **radiator**",
            "action": "post"})
        assert done.status_code == 303, done.text
        web_reply = done.headers["location"]
        cli_reply = a.cli("post", "--as", "alice", "--group", "club", "--reply-to", thread,
                          "On the **sofa**").stdout.strip()
        web_on_b = await eventually(lambda: _one(b, POST, uri=web_reply), what="web reply")
        cli_on_b = await eventually(lambda: _one(b, POST, uri=cli_reply), what="CLI reply")
        assert "<strong>radiator</strong>" in web_on_b[0]
        assert "<strong>sofa</strong>" in cli_on_b[0]
        # Same visibility, parent, thread and group on the member's server.
        assert web_on_b[1:5] == cli_on_b[1:5] == ("public", thread, on_b[3], club)
        assert web_on_b[5] == f"{a.base_url}/users/carl"

        # A mentioned-only post from the CLI: the @mention in the text is its audience
        # (resolved by WebFinger on B), with no --mention.
        secret = a.cli("post", "--as", "alice", "--group", "club", "--visibility",
                       "mentioned", "--title", "Psst", f"Cake for @bea@{b.domain}").stdout.strip()
        secret_on_b = await eventually(lambda: _one(b, POST, uri=secret), what="mention on B")
        assert secret_on_b[1] == "mentioned"
        assert 'class="mention"' in secret_on_b[0]
        audience = await a.query(
            "SELECT a.uri FROM post_audience pa JOIN actors a ON a.id = pa.actor_id "
            "JOIN posts p ON p.id = pa.post_id WHERE p.uri = :uri", uri=secret)
        assert [row[0] for row in audience] == [f"{b.base_url}/users/bea"]
        # Nobody to see it: the CLI says why, and posts nothing.
        refused = a.cli("post", "--as", "alice", "--group", "club", "--visibility",
                        "mentioned", "Cake for @nobody@nowhere.invalid", check=False)
        assert refused.returncode != 0
        assert "nobody was found for @nobody@nowhere.invalid" in refused.stderr
