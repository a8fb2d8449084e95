"""What a token may do: a read token cannot write, a revoked or expired token gets 401 on
every route of the API (the route table itself is walked, so a route added later is held to
it too), and a token reads its own person's account."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import update
from starlette.routing import Route

from fedi.accounts.tokens import digest
from fedi.api.routes import routes
from fedi.groups.posting import post_to_group
from fedi.store.models import Notification, OAuthToken
from tests.api.support import api_app, client, make_group, make_user, token_for
from tests.support.app import InProcess

# Callable without a token by design (Mastodon's public methods, the OAuth endpoints that
# authenticate the client instead, images), and the consent page, which is a web page.
PUBLIC = re.compile(r"^(/static/|/oauth/|/\.well-known/|/api/v1/apps$|/api/v[12]/instance"
                    r"|/api/v1/streaming/health$)")
WRITES = ("POST", "PUT", "PATCH", "DELETE")
ANSWER_WITHIN = 10.0  # seconds: a streaming route must refuse, not start a stream


def calls(*, writes_only: bool = False) -> list[tuple[str, str]]:
    """(method, path template) of every HTTP route of the API that needs a token."""
    found = []
    for route in routes:
        if not isinstance(route, Route) or PUBLIC.match(route.path):
            continue
        for method in sorted(route.methods or ()):
            if method == "HEAD" or (writes_only and method not in WRITES):
                continue
            found.append((method, route.path))
    return found


@dataclass
class World:
    fedi: InProcess
    alice_token: str
    ids: dict[str, str]

    def path(self, template: str) -> str:
        """The route's path with real ids: alice's account, her post, her notification."""
        return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: self.ids.get(m.group(1), "1"), template)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    async with api_app(database_url) as fedi:
        alice = await make_user(fedi, "alice")
        bob = await make_user(fedi, "bob")
        group = await make_group(fedi, "tech", "alice")
        async with fedi.services.sessionmaker() as session, session.begin():
            published = await post_to_group(session, fedi.services.urls, alice, group,
                                            "Hello tech", title="Hello")
            notice = Notification(recipient_id=alice.id, kind="mention", actor_id=bob.id,
                                  post_id=published.post.id)
            session.add(notice)
            await session.flush()
        token = await token_for(fedi, "alice")
        yield World(fedi, token, {
            "account_id": str(bob.id), "id": str(published.post.id),
            "notification_id": str(notice.id), "hashtag": "fedi"})


async def _call(http: httpx.AsyncClient, method: str, path: str) -> tuple[int, str]:
    """The status and error of the answer (0 when a stream started instead)."""
    body = {} if method in WRITES else None
    try:
        answer = await asyncio.wait_for(http.request(method, path, json=body), ANSWER_WITHIN)
    except TimeoutError:
        return 0, "no answer: a stream started"
    try:
        body = answer.json()
    except ValueError:
        body = None
    return answer.status_code, str(body.get("error", "")) if isinstance(body, dict) else ""


async def _revoke(fedi: InProcess, raw: str) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        found = await session.execute(update(OAuthToken).where(
            OAuthToken.token_hash == digest(raw)).values(revoked_at=time.time()))
        assert found.rowcount == 1


async def test_a_revoked_token_gets_401_on_every_route(world: World) -> None:
    await _revoke(world.fedi, world.alice_token)
    refused: list[str] = []
    async with client(world.fedi, world.alice_token) as api:
        for method, template in calls():
            path = world.path(template.replace("/notifications/{id:str}",
                                               "/notifications/{notification_id}"))
            status, error = await _call(api, method, path)
            if status != 401 or not error:
                refused.append(f"{method} {path} → {status} {error}")
    assert not refused, "a revoked token was not refused with 401: " + "; ".join(refused)
    assert len(calls()) > 5


async def test_an_expired_token_gets_401(world: World) -> None:
    async with world.fedi.services.sessionmaker() as session, session.begin():
        await session.execute(update(OAuthToken).values(expires_at=time.time() - 1))
    async with client(world.fedi, world.alice_token) as api:
        for path in ("/api/v1/accounts/verify_credentials", "/api/v1/timelines/home",
                     "/api/v1/apps/verify_credentials"):
            answer = await api.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_a_read_token_cannot_write_anywhere(world: World) -> None:
    reader = await token_for(world.fedi, "alice", "read")
    let_through: list[str] = []
    async with client(world.fedi, reader) as api:
        for method, template in calls(writes_only=True):
            status, error = await _call(api, method, world.path(template))
            if status != 403:
                let_through.append(f"{method} {template} → {status} {error}")
        readable = await api.get("/api/v1/accounts/verify_credentials")
        assert readable.status_code == 200
    assert not let_through, "a read-only token was not refused: " + "; ".join(let_through)


async def test_a_read_token_gets_403_posting_a_status(world: World) -> None:
    if ("POST", "/api/v1/statuses") not in calls(writes_only=True):
        pytest.skip("POST /api/v1/statuses is not in the route table yet")
    reader = await token_for(world.fedi, "alice", "read write:favourites")
    async with client(world.fedi, reader) as api:
        answer = await api.post("/api/v1/statuses", json={"status": "@tech hello"})
        assert answer.status_code == 403
        assert "write:statuses" in answer.json()["error"]


async def test_each_token_reads_its_own_person(world: World) -> None:
    bobs = await token_for(world.fedi, "bob")
    async with client(world.fedi, world.alice_token) as alice, client(world.fedi, bobs) as bob:
        assert (await alice.get("/api/v1/accounts/verify_credentials")).json()[
            "username"] == "alice"
        assert (await bob.get("/api/v1/accounts/verify_credentials")).json()[
            "username"] == "bob"
