"""Reading statuses: one, many, a thread's context, the edit history and the source.

Every post read here passes the privacy gate (groups.reading); a status the caller may not
see is a 404, exactly as a missing one. Writing is in status_compose, favourites, boosts and
bookmarks in status_actions; their routes join this module's table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from fedi.api import status_actions, status_compose
from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.entities import Presenter, iso, with_title
from fedi.api.params import read_params
from fedi.api.status_common import json_answer, rendered, source_text, status_path, visible_post
from fedi.groups.reading import Entry, thread
from fedi.groups.viewers import MAX_DEPTH
from fedi.store.models import Post, PostEdit

MAX_MANY = 40
MAX_NESTED_READS = 20  # extra thread reads for replies nested deeper than a page shows


@endpoint("read:statuses", public=True)
async def show(request: Request, caller: Caller) -> Response:
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        post = await visible_post(p, status_path(request))
        return json_answer(await rendered(p, post))


@endpoint("read:statuses", public=True)
async def many(request: Request, caller: Caller) -> Response:
    """GET /api/v1/statuses?id[]=…: those the caller may see, in the order asked; others
    left out."""
    params = await read_params(request)
    ids = [int(i) for i in params.strings("id")[:MAX_MANY] if i.isdigit() and len(i) < 19]
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        found = {post.id: post for post in (await session.execute(
            select(Post).where(Post.id.in_(ids)))).scalars()} if ids else {}
        return json_answer(await p.statuses([found[i] for i in dict.fromkeys(ids) if i in found]))


async def _ancestors(p: Presenter, post: Post) -> list[Post]:
    """The chain of parents above `post`, oldest first, as far as the gate lets us see."""
    chain: list[Post] = []
    current = post
    seen = {post.id}
    for _ in range(MAX_DEPTH):
        if current.in_reply_to is None:
            break
        parent = (await p.session.execute(
            select(Post).where(Post.uri == current.in_reply_to))).scalar_one_or_none()
        if parent is None or parent.id in seen:
            break
        seen.add(parent.id)
        chain.append(parent)
        current = parent
    return list(reversed(chain))


async def _descendants(p: Presenter, post: Post) -> list[Post]:
    """The replies below `post` the viewer may see, in tree order (depth first, each reply
    before its own replies). Replies nested deeper than a thread page draws are read from
    their own top, as the web's "more replies" link does."""
    top = await thread(p.session, p.viewer, post)
    if top is None:
        return []
    found: list[Post] = []
    reads = 0
    stack: list[Entry] = list(reversed(top.children))
    while stack:
        entry = stack.pop()
        if entry.gone is not None:
            continue
        found.append(entry.post)
        children = entry.children
        if entry.more and not children and reads < MAX_NESTED_READS:
            reads += 1
            deeper = await thread(p.session, p.viewer, entry.post)
            children = deeper.children if deeper is not None else []
        stack.extend(reversed(children))
    return await _whole(p, [post.id for post in found])


async def _whole(p: Presenter, ids: list[int]) -> list[Post]:
    """The posts with every column (the thread reader leaves their documents unread)."""
    if not ids:
        return []
    rows = {post.id: post for post in (await p.session.execute(
        select(Post).where(Post.id.in_(ids)).execution_options(populate_existing=True)
    )).scalars()}
    return [rows[i] for i in ids if i in rows]


@endpoint("read:statuses", public=True)
async def context(request: Request, caller: Caller) -> Response:
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        post = await visible_post(p, status_path(request))
        ancestors = await p.statuses(await _ancestors(p, post))
        descendants = await p.statuses(await _descendants(p, post))
        return json_answer({"ancestors": ancestors, "descendants": descendants})


def _version(status: dict[str, Any], name: str | None, summary: str | None, content: str,
             at: float | None) -> dict[str, Any]:
    return {
        "content": with_title(name, content),
        "spoiler_text": summary or "",
        "sensitive": bool(summary),
        "created_at": iso(at),
        "account": status["account"],
        "poll": None,
        "media_attachments": [],
        "emojis": [],
    }


@endpoint("read:statuses", public=True)
async def history(request: Request, caller: Caller) -> Response:
    """Every version, oldest first, the current one last (only it, for an unedited post)."""
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        post = await visible_post(p, status_path(request))
        status = await rendered(p, post)
        edits = (await session.execute(select(PostEdit).where(PostEdit.post_id == post.id)
                                       .order_by(PostEdit.id))).scalars().all()
        versions = []
        since = post.published
        for edit in edits:
            versions.append(_version(status, edit.name, edit.summary, edit.content, since))
            since = edit.edited_at
        versions.append(_version(status, post.name, post.summary, post.content,
                                 post.updated or post.published))
        return json_answer(versions)


@endpoint("read:statuses")
async def source(request: Request, caller: Caller) -> Response:
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        post = await visible_post(p, status_path(request))
        return json_answer({"id": str(post.id), "text": source_text(post),
                            "spoiler_text": post.summary or ""})


routes: list[BaseRoute] = [
    *status_compose.routes,
    Route("/api/v1/statuses", many, methods=["GET"]),
    Route("/api/v1/statuses/{id}", show, methods=["GET"]),
    Route("/api/v1/statuses/{id}/context", context, methods=["GET"]),
    Route("/api/v1/statuses/{id}/history", history, methods=["GET"]),
    Route("/api/v1/statuses/{id}/source", source, methods=["GET"]),
    *status_actions.routes,
]
"""Every status route (routes.py joins them to the API's table)."""
