"""Live updates in the browser (an enhancement: every page works without them).

- `GET /live/threads/{id}`: server-sent events of new replies in a thread;
  `GET /live/groups/{name}`: of new threads in a group. Each event is a post's id and the URL
  of its fragment, sent only if the gate lets THIS viewer see the post, asked again for every
  event (a person who left the group or logged out meanwhile stops getting members' posts).
- `GET /posts/{id}/fragment`: one post as an HTML `<article>`, gate-checked again (404 for
  forbidden and missing alike); `GET /static/live.js` fetches and inserts it.

A browser that reconnects sends Last-Event-ID (the last post id it got), and a page can open
its stream with `?after=ID` (the newest post it shows): either way it is sent what it missed,
up to BACKLOG posts. Streams end when the server stops (`close_streams`), and a
stream whose client reads too slowly is dropped by the hub (fedi.live.hub).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from fedi.accounts import sessions
from fedi.groups import reading
from fedi.groups.threads import find_post
from fedi.groups.viewers import facts_for, viewer_for
from fedi.live.events import PostEvent
from fedi.live.hub import Closed, Subscription
from fedi.live.listener import PgListener
from fedi.privacy.access import Viewer, can_view, listed
from fedi.services import Services
from fedi.store.models import Actor, Group, Post
from fedi.urls import GROUPS
from fedi.web.auth import SESSION_COOKIE, render
from fedi.web.pages import link_of
from fedi.web.params import non_negative, row_id

KEEPALIVE_SECONDS = 15.0
RETRY_MS = 5_000  # the browser's wait before it reconnects
BACKLOG = 50
SCRIPT_BYTES = (files("fedi") / "static" / "live.js").read_bytes()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@dataclass(frozen=True)
class Topic:
    """What a stream follows: one thread's posts, or the threads started in one group."""

    thread_id: int | None = None
    group_id: int | None = None

    def matches(self, event: PostEvent) -> bool:
        if self.thread_id is not None:
            return event.thread_id == self.thread_id and not event.starts_thread
        return event.group_id == self.group_id and event.starts_thread

    def missed(self, after: int) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = [
            Post.id > after, Post.held.is_(None), Post.deleted_at.is_(None)]
        if self.thread_id is not None:
            where += [Post.thread_id == self.thread_id, Post.id != self.thread_id]
        else:
            where += [Post.group_id == self.group_id, Post.in_reply_to.is_(None)]
        return where


async def _viewer(request: Request, session: AsyncSession) -> Viewer:
    """Who is watching, now: the session cookie is looked up afresh (it may have ended)."""
    raw = request.cookies.get(SESSION_COOKIE)
    signed_in = await sessions.find(session, raw) if raw else None
    return await viewer_for(session, signed_in.actor.uri if signed_in else None)


async def _shown(session: AsyncSession, post: Post, viewer: Viewer, topic: Topic) -> bool:
    facts = await facts_for(session, post)
    if not can_view(facts, viewer):
        return False
    if topic.group_id is None:
        return True
    # A group's listing shows non-members its public threads only (unlisted ones stay out).
    return listed(facts) or viewer.is_member(facts.group) or viewer.actor == facts.author


async def _visible_now(request: Request, post_id: int, topic: Topic) -> bool:
    async with _services(request).sessionmaker() as session, session.begin():
        post = await session.get(Post, post_id)
        if post is None or post.held is not None or post.deleted_at is not None:
            return False
        return await _shown(session, post, await _viewer(request, session), topic)


def _event(post_id: int) -> bytes:
    data = json.dumps({"id": post_id, "url": f"/posts/{post_id}/fragment"})
    return f"id: {post_id}\nevent: post\ndata: {data}\n\n".encode()


async def _events(request: Request, topic: Topic, subscription: Subscription,
                  last_seen: int | None) -> AsyncIterator[bytes]:
    services = _services(request)
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        if last_seen is not None:
            # Decided first, sent after: a slow client never holds a database connection.
            async with services.sessionmaker() as session, session.begin():
                viewer = await _viewer(request, session)
                missed = (await session.execute(
                    select(Post).where(*topic.missed(last_seen)).order_by(Post.id).limit(BACKLOG)
                )).scalars().all()
                shown = [p.id for p in missed if await _shown(session, p, viewer, topic)]
            for post_id in shown:
                yield _event(post_id)
        while True:
            try:
                event = await subscription.next(KEEPALIVE_SECONDS)
            except Closed:
                return
            if event is None:
                yield b": keep-alive\n\n"
                continue
            if not isinstance(event, PostEvent) or not topic.matches(event):
                continue  # deletes and notifications are for the client API's streams
            if await _visible_now(request, event.post_id, topic):
                yield _event(event.post_id)
    finally:
        subscription.close()


def _stream(request: Request, topic: Topic) -> Response:
    subscription = _services(request).live.subscribe()
    if subscription is None:
        return Response("Live updates are not available now (too many streams, or the server "
                        "is stopping); the page works without them.\n",
                        status_code=503, media_type="text/plain",
                        headers={"Retry-After": "30"})
    # A reconnecting browser says what it got last; a page opening its stream, what it shows.
    last_seen = non_negative(
        request.headers.get("last-event-id") or request.query_params.get("after"))
    return StreamingResponse(
        _events(request, topic, subscription, last_seen), media_type="text/event-stream",
        # No proxy buffering (nginx) and no caching: events must arrive as they happen.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def thread_stream(request: Request) -> Response:
    services = _services(request)
    thread_id = row_id(request.path_params["thread_id"])
    async with services.sessionmaker() as session, session.begin():
        root = await session.get(Post, thread_id) if thread_id else None
        if root is None or root.thread_id != root.id or root.deleted_at is not None:
            return not_found_response()
        if not can_view(await facts_for(session, root), await _viewer(request, session)):
            return not_found_response()
    return _stream(request, Topic(thread_id=root.id))


async def group_stream(request: Request) -> Response:
    services = _services(request)
    uri = services.urls.actor(GROUPS, request.path_params["name"])
    async with services.sessionmaker() as session:
        group = (await session.execute(
            select(Actor).where(Actor.uri == uri, Actor.local, Actor.type == "Group")
        )).scalar_one_or_none()
    if group is None:
        return not_found_response()
    return _stream(request, Topic(group_id=group.id))


async def fragment(request: Request) -> Response:
    """One post, for live.js to insert, drawn as the page draws a loaded one (its actions
    too): the gate decides as for the post's own page (reading.entry_of)."""
    services = _services(request)
    post_id = row_id(request.path_params["post_id"])
    async with services.sessionmaker() as session, session.begin():
        post = await session.get(Post, post_id) if post_id else None
        viewer = await _viewer(request, session)
        entry = await reading.entry_of(session, viewer, post) if post is not None else None
        if post is None or entry is None:
            return not_found_response()
        group = entry.group
        person = await reading.actor_row(session, viewer)
        membership = await reading.membership(session, group, person) if group else "none"
        config = await session.get(Group, group.id) if group is not None and group.local else None
        parent = await find_post(session, post.in_reply_to) if post.in_reply_to else None
        reply = post.thread_id not in (None, post.id)
        # The page the fragment goes into, where its forms come back to (not the fragment).
        shown_on = await session.get(Post, post.thread_id) if reply else None
        page = link_of(shown_on) if shown_on is not None else (
            group.uri if group is not None and group.local else link_of(post))
    response = await render(request, "_live_post.html", {
        "entry": entry, "reply": reply, "post": None,
        "parent_id": parent.id if parent is not None else None, "group": group,
        "membership": membership, "config": config, "back_path": urlsplit(page).path,
    })
    response.headers["Cache-Control"] = "private, no-store"
    return response


def not_found_response() -> Response:
    """404 for missing and forbidden alike (a stream or fragment is no page to show)."""
    return Response("Not found\n", status_code=404, media_type="text/plain")


async def script(_request: Request) -> Response:
    """The one script, served by fedi itself (CSP: script-src 'self')."""
    return Response(SCRIPT_BYTES, media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=3600"})


def close_streams(services: Services) -> None:
    """End every open stream now (the server is stopping)."""
    services.live.close()


routes = [
    Route("/live/threads/{thread_id:str}", thread_stream),
    Route(f"/live/{GROUPS}/{{name:str}}", group_stream),
    Route("/posts/{post_id:str}/fragment", fragment),
    Route("/static/live.js", script),
]


def start_listening(services: Services, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """PostgreSQL: LISTEN for every process's posts until stop is set (SQLite: its commits
    publish to the hub directly, fedi.live.source)."""
    if services.settings.is_sqlite:
        return None
    listener = PgListener(services.settings.database_url, services.live.publish)
    services.live_listener = listener
    return asyncio.create_task(listener.run(stop), name="fedi live listener")
