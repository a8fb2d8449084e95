"""Search: `/api/v2/search` and `/api/v1/accounts/search`.

An address (`@name@host`, `name@host`) or a link is looked up as the web's /lookup does
(groups.reading.lookup with the server's resolver): with `resolve=true` and a person's
token an account of another server is fetched and stored; without, only what is known here
is found. Other text finds accounts by name prefix (or display name) and posts by their
title or text, and every post found passes the privacy gate. A hidden group is found only
by its members. Mastodon removed /api/v1/search; it is not served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.actors.local import INSTANCE_USERNAME
from fedi.api.accounts import ACCOUNT_TYPES, shown_to
from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.entities import Presenter
from fedi.api.errors import unprocessable
from fedi.api.params import Params, read_params
from fedi.errors import FediError
from fedi.groups import reading
from fedi.groups.threads import find_post
from fedi.store.models import Actor, Post

TYPES = ("accounts", "statuses", "hashtags")
MAX_QUERY = 500
SCAN = 200  # posts read per text search before the gate picks what the viewer may see


@dataclass(frozen=True)
class Query:
    text: str
    kind: str | None
    resolve: bool
    limit: int
    offset: int

    @property
    def is_link(self) -> bool:
        return self.text.startswith(("http://", "https://"))

    @property
    def is_address(self) -> bool:
        """`@name@host` or `name@host` (one @ inside, a host after it)."""
        name, _, host = self.text.removeprefix("@").partition("@")
        return bool(name and host) and " " not in self.text

    def wants(self, kind: str) -> bool:
        return self.kind is None or self.kind == kind


def _query(params: Params, *, kind: str | None = None) -> Query:
    text = (params.text("q", max_length=MAX_QUERY) or "").strip()
    if not text:
        raise unprocessable("q is required: what to search for", "q")
    asked = kind or params.text("type")
    if asked is not None and asked not in TYPES:
        raise unprocessable(f"type must be one of {', '.join(TYPES)}", "type")
    return Query(text, asked or None, params.flag("resolve"),
                 params.integer("limit", 20, low=1, high=40) or 20,
                 params.integer("offset", 0, low=0, high=10_000) or 0)


def _like(text: str) -> str:
    return text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _exact_account(session: AsyncSession, request: Request, caller: Caller, q: Query
                         ) -> Actor | None:
    """The account an address or link names, fetched from its server when allowed."""
    services = services_of(request)
    try:
        return await reading.lookup(
            session, services.resolver, services.urls, services.settings.domain, q.text,
            remote=q.resolve and caller.person is not None)
    except FediError:
        return None  # nobody there, or their server did not answer: no result


async def _accounts(session: AsyncSession, request: Request, caller: Caller, p: Presenter,
                    q: Query) -> list[Actor]:
    found: list[Actor] = []
    if q.is_link or q.is_address:
        exact = await _exact_account(session, request, caller, q)
        found = [exact] if exact is not None else []
        return (await shown_to(session, p.viewer, found))[q.offset:q.offset + q.limit]
    prefix = _like(q.text.removeprefix("@")) + "%"
    rows = (await session.execute(
        select(Actor).where(
            Actor.type.in_(ACCOUNT_TYPES), Actor.username != INSTANCE_USERNAME,
            or_(func.lower(Actor.username).like(prefix, escape="\\"),
                func.lower(func.coalesce(Actor.name, "")).like(f"%{prefix}", escape="\\")))
        .order_by(Actor.local.desc(), Actor.username, Actor.id)
        .offset(q.offset).limit(q.limit * 2)
    )).scalars().all()
    return (await shown_to(session, p.viewer, rows))[:q.limit]


async def _statuses(session: AsyncSession, p: Presenter, q: Query) -> list[Post]:
    if q.is_link:
        post = await find_post(session, q.text)
        return await p.visible([post]) if post is not None and q.offset == 0 else []
    if q.is_address:
        return []
    pattern = f"%{_like(q.text)}%"
    rows = (await session.execute(
        select(Post).where(
            Post.deleted_at.is_(None), Post.held.is_(None),
            or_(func.lower(func.coalesce(Post.name, "")).like(pattern, escape="\\"),
                func.lower(Post.content).like(pattern, escape="\\")))
        .order_by(Post.id.desc()).limit(SCAN)
    )).scalars().all()
    return (await p.visible(rows))[q.offset:q.offset + q.limit]


async def _search(request: Request, caller: Caller, q: Query) -> dict[str, Any]:
    services = services_of(request)
    async with services.sessionmaker() as session, session.begin():
        p = await presenter(session, request, caller)
        actors = await _accounts(session, request, caller, p, q) if q.wants("accounts") else []
        posts = await _statuses(session, p, q) if q.wants("statuses") else []
        return {"accounts": await p.accounts(actors), "statuses": await p.statuses(posts),
                "hashtags": []}


@endpoint("read:search", public=True)
async def search_v2(request: Request, caller: Caller) -> Response:
    return JSONResponse(await _search(request, caller, _query(await read_params(request))))


@endpoint("read:accounts", public=True)
async def search_accounts(request: Request, caller: Caller) -> Response:
    q = _query(await read_params(request), kind="accounts")
    return JSONResponse((await _search(request, caller, q))["accounts"])


routes: list[BaseRoute] = [
    Route("/api/v2/search", search_v2),
    Route("/api/v1/accounts/search", search_accounts),
]
