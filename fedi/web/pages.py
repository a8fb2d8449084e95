"""HTML pages (Jinja2, autoescaped): thin over fedi.groups.reading, which asks the privacy
gate for every post shown. Post bodies are sanitised before they are stored (fedi.content).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedi.errors import FediError, FetchError
from fedi.groups import reading
from fedi.groups.reading import GroupSort, ThreadSort, parse_page, parse_sort
from fedi.privacy.access import Viewer
from fedi.services import Services
from fedi.store.models import Actor, Group, Post
from fedi.web.auth import render, require_login
from fedi.web.gate import viewer_of
from fedi.web.negotiation import not_found
from fedi.web.params import non_negative, row_id
from fedi.web.templating import STYLESHEET, STYLESHEET_BYTES, templates

HOME_ON_FRONT = 10  # threads of the home feed shown above the directory


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def page_of(actor: Actor) -> str:
    """Where this server shows an actor: its own page, or the lookup page for a remote one."""
    return actor.uri if actor.local else "/lookup?" + urlencode({"q": actor.uri})


def link_of(post: Post) -> str:
    """Where this server shows a post (and its thread below it)."""
    return post.uri if post.local else f"/remote/posts/{post.id}"


templates.env.filters["page_of"] = page_of
templates.env.filters["link_of"] = link_of


def _with_page(request: Request, page: int) -> str:
    query = dict(request.query_params)
    query["page"] = str(page)
    return f"{request.url.path}?{urlencode(query)}"


def _pager(request: Request, listing: reading.Listing[Any]) -> dict[str, str | None]:
    return {
        "prev_url": _with_page(request, listing.page - 1) if listing.page > 1 else None,
        "next_url": _with_page(request, listing.page + 1) if listing.has_next else None,
    }


async def _viewer(request: Request) -> Viewer:
    found = await viewer_of(request)
    if isinstance(found, Response):
        return Viewer()  # a browser with a bad signature header reads as anyone does
    return found


async def index(request: Request) -> Response:
    services = _services(request)
    q = request.query_params.get("q", "")[:100]
    sort = parse_sort(GroupSort, request.query_params.get("sort"), GroupSort.ACTIVITY)
    page = parse_page(request.query_params.get("page"))
    viewer = await _viewer(request)
    async with services.sessionmaker() as session:
        groups = await reading.directory(session, q=q, sort=sort, page=page)
        home = await reading.home_feed(session, viewer) if viewer.actor else None
    return await render(request, "index.html", {
        "groups": groups, "q": q, "sort": sort.value, "sorts": list(GroupSort),
        "home": home.items[:HOME_ON_FRONT] if home else None,
        "home_more": home is not None and (home.has_next or len(home.items) > HOME_ON_FRONT),
        **_pager(request, groups),
    })


@require_login
async def home(request: Request) -> Response:
    page = parse_page(request.query_params.get("page"))
    viewer = await _viewer(request)
    async with _services(request).sessionmaker() as session:
        feed = await reading.home_feed(session, viewer, page=page)
    return await render(request, "home.html", {"feed": feed, **_pager(request, feed)})


async def render_actor(request: Request, actor: Actor) -> Response:
    """A group (sidebar and threads) or a person (their posts), as this viewer may see them."""
    services = _services(request)
    viewer = await _viewer(request)
    page = parse_page(request.query_params.get("page"))
    sort = parse_sort(ThreadSort, request.query_params.get("sort"), ThreadSort.HOT)
    context: dict[str, Any] = {
        "actor": actor, "handle": f"@{actor.username}@{actor.domain}", "sort": sort.value,
        "sorts": list(ThreadSort), "group": None, "membership": "none",
    }
    async with services.sessionmaker() as session:
        person = await reading.actor_row(session, viewer)
        if actor.type == "Group":
            side = await reading.sidebar(session, actor, person)
            listing = await reading.group_threads(
                session, viewer, actor, sort=sort, page=page,
                silenced=services.domain_policy.is_silenced,
            )
            context.update(
                side=side, group=actor, config=side.config, membership=side.membership,
                rules=json.loads(side.config.rules or "[]") if side.config else [],
            )
        else:
            listing, total = await reading.person_posts(session, viewer, actor, page=page)
            context["total"] = total
    return await render(request, "actor.html", {
        **context, "entries": listing.items, **_pager(request, listing),
        "newest": max((e.post.id for e in listing.items), default=0)})


async def render_post(
    request: Request, post: Post, author: Actor | None, viewer: Viewer
) -> Response:
    """A post with the replies below it that this viewer may see, as a tree: one page of
    them (`?after=ID` goes on after that direct reply; deeper cuts link to their post)."""
    services = _services(request)
    after = non_negative(request.query_params.get("after"))
    async with services.sessionmaker() as session:
        page = await reading.thread_page(session, viewer, post, after=after,
                                         budget=reading.REPLIES_PER_PAGE,
                                         top_limit=reading.TOP_PER_PAGE)
        if page is None:
            not_found()
        top = page.top
        root = await session.get(Post, post.thread_id) if post.thread_id else post
        group = await session.get(Actor, post.group_id) if post.group_id else None
        person = await reading.actor_row(session, viewer)
        membership = await reading.membership(session, group, person) if group else "none"
        config = await session.get(Group, group.id) if group is not None and group.local else None
    return await render(request, "post.html", {
        "config": config,
        "post": post, "top": top, "root": root if root is not None else post,
        "title": (root.name if root is not None else None) or post.name,
        "group": group, "membership": membership, "nest_limit": reading.NEST_LIMIT,
        "thread_id": post.thread_id or post.id, "newest": page.newest, "after": page.after,
    })


async def remote_post(request: Request) -> Response:
    """A post of another server that this one stores (a remote group's thread)."""
    post_id = row_id(request.path_params["post_id"])
    if post_id is None:
        not_found()
    async with _services(request).sessionmaker() as session:
        post = await session.get(Post, post_id)
    if post is None:
        not_found()
    if post.local:
        return RedirectResponse(post.uri, status_code=303)
    viewer = await _viewer(request)
    return await render_post(request, post, None, viewer)


async def lookup(request: Request) -> Response:
    """Find a person or group by @name@host or URL, here or on another server."""
    services = _services(request)
    q = request.query_params.get("q", "").strip()
    if not q:
        return await render(request, "lookup.html", {"q": "", "error": None})
    viewer = await _viewer(request)
    try:
        async with services.sessionmaker() as session, session.begin():
            found = await reading.lookup(
                session, services.resolver, services.urls, services.settings.domain, q,
                remote=viewer.actor is not None,
            )
    except FetchError as exc:  # the other server did not answer, or not as it should
        return await render(request, "lookup.html", {"q": q, "error": exc.reason}, status=502)
    except FediError as exc:
        return await render(request, "lookup.html", {"q": q, "error": exc.reason}, status=400)
    if found.local:
        return RedirectResponse(found.uri, status_code=303)
    return await render_actor(request, found)


async def stylesheet(_request: Request) -> Response:
    """The pages' only style, as a file: the Content-Security-Policy allows no inline style."""
    return Response(STYLESHEET_BYTES, media_type="text/css",
                    headers={"Cache-Control": "public, max-age=3600"})


routes = [
    Route("/", index), Route("/home", home), Route("/lookup", lookup),
    Route("/remote/posts/{post_id:str}", remote_post),
    Route(f"/static/{STYLESHEET}", stylesheet),
]
