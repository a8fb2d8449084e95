"""Timelines (home, public, hashtag, list) and markers, as Mastodon serves them.

SQL narrows each timeline to candidates, newest first; the privacy gate decides what the
caller sees (`Presenter.visible`), so a page reads more rows than `limit` and the Link
header names the edges of what was read (`read_gated`), never skipping or repeating a post.

- home: the threads and replies of the groups the person belongs to, the posts of the
  people they follow, and their own; minus the accounts they block or mute.
- public: public posts only (the gate's `listed`), never members-only ones, not even to
  members; servers silenced here stay out, as they do from the public pages.
- tag: public posts carrying the hashtag (a Hashtag tag, or `#name` in the text).
- list: there are no lists here, so no list id exists (404); GET /api/v1/lists is [].
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.accounts import relations
from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.entities import Presenter, iso
from fedi.api.errors import ApiError, not_found, unprocessable
from fedi.api.pagination import PageQuery, link_header, page_query, paged
from fedi.api.params import Params, read_params
from fedi.content import html_to_text
from fedi.groups import notices
from fedi.privacy.access import listed
from fedi.store.models import Actor, Follow, Marker, Post, now

R = TypeVar("R")
ROUNDS = 3  # reads of `scan` rows at most, when the gate hides many
MAX_SCAN = 120
TAG = re.compile(r"^\w{1,100}$")
TIMELINES = ("home", "notifications")


def scan_for(page: PageQuery) -> int:
    return min(MAX_SCAN, page.limit * 2 + 10)


async def read_gated(
    session: AsyncSession, query: Select[R], column: InstrumentedAttribute[int],
    page: PageQuery, keep: Callable[[list[R]], Awaitable[list[R]]], ident: Callable[[R], int],
) -> tuple[list[R], list[int]]:
    """Up to `limit` rows that `keep` lets through, newest first, and the ids read to find
    them (for the Link header): the rows after the last one shown are not counted as read,
    so the next page starts right after what this one showed."""
    ascending = page.min_id is not None
    shown: list[R] = []
    read: list[int] = []
    cursor, scan = page, scan_for(page)
    for _ in range(ROUNDS):
        window = paged(query, column, cursor, scan=scan)
        rows: list[R] = list((await session.execute(window)).scalars())
        kept = {ident(r) for r in await keep(rows)}
        for row in rows:
            read.append(ident(row))
            if ident(row) in kept:
                shown.append(row)
                if len(shown) == page.limit:
                    break
        if len(shown) == page.limit or len(rows) < scan:
            break
        cursor = replace(cursor, min_id=read[-1]) if ascending else replace(
            cursor, max_id=read[-1])
    if ascending:
        shown.reverse()
    return shown, read


def paged_json(request: Request, params: Params, items: list[Any], read: Sequence[int]
               ) -> JSONResponse:
    headers = {}
    link = link_header(services_of(request).settings.base_url, request.url.path, params, read)
    if link is not None:
        headers["Link"] = link
    return JSONResponse(items, headers=headers)


async def left_out(session: AsyncSession, person: Actor | None, *, notifications: bool = False
                   ) -> set[int]:
    """The accounts the person blocks or mutes (accounts.relations decides; none for an
    anonymous reader)."""
    if person is None:
        return set()
    return await relations.hidden_from(session, person, notifications=notifications)


# -- home -------------------------------------------------------------------------------------


async def _home_query(session: AsyncSession, shown: Presenter, person: Actor
                      ) -> Select[Post]:
    viewer = shown.viewer
    groups = (viewer.member_of | viewer.moderator_of) - viewer.banned_from
    group_ids = list((await session.execute(
        select(Actor.id).where(Actor.uri.in_(groups)))).scalars()) if groups else []
    followed = list((await session.execute(
        select(Follow.target_id).join(Actor, Actor.id == Follow.target_id).where(
            Follow.follower_id == person.id, Follow.state == "accepted",
            Actor.type != "Group"))).scalars())
    sources: list[ColumnElement[bool]] = [Post.author_id.in_([person.id, *followed])]
    if group_ids:
        sources.append(Post.group_id.in_(group_ids))
    query = select(Post).where(
        Post.deleted_at.is_(None), or_(*sources),
        or_(Post.held.is_(None), Post.author_id == person.id))
    hidden = await left_out(session, person)
    if hidden:
        query = query.where(Post.author_id.not_in(hidden))
    return query


@endpoint("read:statuses")
async def home(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    params = await read_params(request)
    page = page_query(params)
    async with services_of(request).sessionmaker() as session:
        shown = await presenter(session, request, caller)
        query = await _home_query(session, shown, person)
        posts, read = await read_gated(session, query, Post.id, page, shown.visible,
                                       lambda p: p.id)
        items = await shown.statuses(posts)
    return paged_json(request, params, items, read)


# -- public and hashtag -------------------------------------------------------------------------


def _public_posts(params: Params) -> Select[Post]:
    query = select(Post).where(Post.deleted_at.is_(None), Post.held.is_(None),
                               Post.visibility == "public")
    if params.flag("only_media"):
        query = query.where(false())  # no media attachments here yet
    if params.flag("local"):
        query = query.where(Post.local)
    elif params.flag("remote"):
        query = query.where(Post.local.is_(False))
    return query


def _listed_for(request: Request, shown: Presenter, also: Callable[[Post], bool] | None = None
                ) -> Callable[[list[Post]], Awaitable[list[Post]]]:
    """Visible to the caller and listed to anyone, not from a silenced server."""
    policy = services_of(request).domain_policy

    async def keep(posts: list[Post]) -> list[Post]:
        gate = await shown.gate(posts)
        found = [p for p in posts if p.deleted_at is None and gate.sees(p.id)
                 and listed(gate.facts(p.id)) and (also is None or also(p))]
        remote = {p.author_id for p in found if not p.local}
        domains = dict((await shown.session.execute(
            select(Actor.id, Actor.domain).where(Actor.id.in_(remote)))).all()) if remote else {}
        silenced = {d for d in set(domains.values()) if await policy.is_silenced(d)}
        return [p for p in found if domains.get(p.author_id) not in silenced]

    return keep


@endpoint("read:statuses", public=True)
async def public(request: Request, caller: Caller) -> Response:
    params = await read_params(request)
    page = page_query(params)
    async with services_of(request).sessionmaker() as session:
        shown = await presenter(session, request, caller)
        query = _public_posts(params)
        hidden = await left_out(session, caller.person)
        if hidden:
            query = query.where(Post.author_id.not_in(hidden))
        posts, read = await read_gated(session, query, Post.id, page,
                                       _listed_for(request, shown), lambda p: p.id)
        items = await shown.statuses(posts)
    return paged_json(request, params, items, read)


def tagged(post: Post, tag: str) -> bool:
    """The post carries `#tag` (any case): as a Hashtag tag, or written in its text."""
    try:
        document: Any = json.loads(post.document)
    except (ValueError, TypeError):
        document = {}
    tags = document.get("tag") if isinstance(document, dict) else None
    for item in tags if isinstance(tags, list) else [tags]:
        if isinstance(item, dict) and item.get("type") == "Hashtag" and str(
                item.get("name", "")).lstrip("#").lower() == tag:
            return True
    text = html_to_text(post.content or "")
    return re.search(rf"(?<![\w#])#{re.escape(tag)}(?!\w)", text, re.IGNORECASE) is not None


@endpoint("read:statuses", public=True)
async def hashtag(request: Request, caller: Caller) -> Response:
    params = await read_params(request)
    page = page_query(params)
    tag = request.path_params["hashtag"].lstrip("#").lower()
    if not TAG.match(tag):
        raise unprocessable("a hashtag is letters, digits and underscores", "hashtag")
    pattern = "%#" + tag.replace("_", "\\_") + "%"
    async with services_of(request).sessionmaker() as session:
        shown = await presenter(session, request, caller)
        # The document's JSON escapes non-ASCII letters; the content keeps them.
        query = _public_posts(params).where(or_(
            func.lower(Post.document).like(pattern, escape="\\"),
            func.lower(Post.content).like(pattern, escape="\\")))
        hidden = await left_out(session, caller.person)
        if hidden:
            query = query.where(Post.author_id.not_in(hidden))
        posts, read = await read_gated(
            session, query, Post.id, page,
            _listed_for(request, shown, lambda p: tagged(p, tag)), lambda p: p.id)
        items = await shown.statuses(posts)
    return paged_json(request, params, items, read)


@endpoint("read:lists")
async def list_timeline(request: Request, caller: Caller) -> Response:
    raise not_found()  # no lists exist here (GET /api/v1/lists answers [])


# -- markers ------------------------------------------------------------------------------------


def _marker(row: Marker) -> dict[str, Any]:
    return {"last_read_id": row.last_read_id, "version": row.version,
            "updated_at": iso(row.updated_at)}


async def _markers(session: AsyncSession, person: Actor, timelines: Sequence[str]
                   ) -> dict[str, Any]:
    rows = (await session.execute(select(Marker).where(
        Marker.actor_id == person.id, Marker.timeline.in_(timelines)))).scalars()
    return {row.timeline: _marker(row) for row in rows}


@endpoint("read:statuses")
async def get_markers(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    params = await read_params(request)
    wanted = [t for t in params.strings("timeline") if t in TIMELINES]
    async with services_of(request).sessionmaker() as session:
        return JSONResponse(await _markers(session, person, wanted))


def _wanted_markers(params: Params) -> dict[str, str]:
    found: dict[str, str] = {}
    for timeline in TIMELINES:
        if timeline not in params:
            continue
        raw = params.mapping(timeline).get("last_read_id")
        if not isinstance(raw, (str, int)) or isinstance(raw, bool) or not str(raw).strip():
            raise unprocessable(f"{timeline}[last_read_id] is missing",
                                f"{timeline}.last_read_id")
        value = str(raw).strip()
        if len(value) > 64:
            raise unprocessable(f"{timeline}[last_read_id] is longer than 64 characters",
                                f"{timeline}.last_read_id")
        found[timeline] = value
    if not found:
        raise unprocessable("give home[last_read_id] or notifications[last_read_id]")
    return found


@endpoint("write:statuses")
async def save_markers(request: Request, caller: Caller) -> Response:
    """Save where the person stopped reading; each save adds one to the marker's version. A
    notifications marker also marks those notifications read (the web's unread count)."""
    person = caller.need_person()
    wanted = _wanted_markers(await read_params(request))
    try:
        async with services_of(request).sessionmaker() as session, session.begin():
            for timeline, last_read_id in wanted.items():
                row = await session.get(Marker, (person.id, timeline))
                if row is None:
                    session.add(Marker(actor_id=person.id, timeline=timeline,
                                       last_read_id=last_read_id, version=1))
                else:
                    row.last_read_id, row.updated_at = last_read_id, now()
                    row.version += 1
                if timeline == "notifications" and last_read_id.isdigit() and len(
                        last_read_id) < 19:
                    await notices.read_through(session, person, int(last_read_id))
            await session.flush()
            saved = await _markers(session, person, list(wanted))
    except IntegrityError:  # the same marker saved twice at once
        raise ApiError(409, "Conflict during update, please try again") from None
    return JSONResponse(saved)


routes: list[BaseRoute] = [
    Route("/api/v1/timelines/home", home),
    Route("/api/v1/timelines/public", public),
    Route("/api/v1/timelines/tag/{hashtag:str}", hashtag),
    Route("/api/v1/timelines/list/{id:str}", list_timeline),
    Route("/api/v1/markers", get_markers, methods=["GET"]),
    Route("/api/v1/markers", save_markers, methods=["POST"]),
]
