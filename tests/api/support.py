"""Helpers for client-API tests: the in-process app, local people with bearer tokens, and an
httpx client per token (all on the same app)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from fedi.accounts import oauth
from fedi.accounts import scopes as scope_rules
from fedi.actors.local import create_group, create_user, find_local
from fedi.groups.membership import join_local_group
from fedi.groups.posting import post_to_group
from fedi.store.models import Actor, Post
from tests.accounts.support import app as accounts_app
from tests.support.app import BASE_URL, InProcess

ALL_SCOPES = "read write follow push"


@asynccontextmanager
async def api_app(database_url: str, **overrides: Any) -> AsyncIterator[InProcess]:
    async with accounts_app(database_url, **overrides) as fedi:
        yield fedi


async def make_user(fedi: InProcess, name: str, *, admin: bool = False) -> Actor:
    async with fedi.services.sessionmaker() as session, session.begin():
        found = await find_local(session, name)
        if found is not None:
            return found
        return await create_user(session, fedi.services.urls, name, admin=admin)


async def make_group(fedi: InProcess, name: str, owner: str, **options: object) -> Actor:
    async with fedi.services.sessionmaker() as session, session.begin():
        return await create_group(session, fedi.services.urls, name, owner=owner,
                                  **options)  # type: ignore[arg-type]


async def write_post(fedi: InProcess, author: str, group: Actor, text: str, *,
                     visibility: str | None = None, reply_to: Post | None = None) -> Post:
    """`author` (made if missing) posts into `group` through groups.posting, as the web does."""
    async with fedi.services.sessionmaker() as session, session.begin():
        person = await make_user(fedi, author)
        found = await post_to_group(
            session, fedi.services.urls, await session.merge(person),
            await session.merge(group), text, visibility=visibility,
            reply_to=reply_to.uri if reply_to else None)
        return found.post


async def join_group(fedi: InProcess, name: str, group: Actor) -> None:
    """Local person `name` (made if missing) joins, or asks to join, `group`."""
    async with fedi.services.sessionmaker() as session, session.begin():
        person = await make_user(fedi, name)
        await join_local_group(session, fedi.services.urls, await session.merge(group),
                               await session.merge(person))


async def token_for(fedi: InProcess, name: str | None, scopes: str = ALL_SCOPES) -> str:
    """A bearer token for local person `name` (made if missing), or an app-only token when
    name is None, from a freshly registered app."""
    wanted = scope_rules.parse(scopes)
    actor_id = (await make_user(fedi, name)).id if name is not None else None
    async with fedi.services.sessionmaker() as session, session.begin():
        app, _ = await oauth.register_app(session, name="tests", redirect_uris=[oauth.OOB],
                                          scopes=scope_rules.parse(ALL_SCOPES))
        issued = await oauth.issue_token(session, app, actor_id, wanted)
    return issued.access_token


@asynccontextmanager
async def client(fedi: InProcess, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending `Authorization: Bearer token` (none when token is None)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=fedi.http._transport, base_url=BASE_URL,
                                 headers=headers) as http:
        yield http
