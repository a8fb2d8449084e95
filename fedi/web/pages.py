"""HTML pages (Jinja2, autoescaped). Post bodies are sanitised before they are stored."""

from __future__ import annotations

import json

from markupsafe import Markup
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.activitypub.activities import iso
from fedi.groups.counts import visible_replies
from fedi.groups.viewers import facts_for
from fedi.privacy.access import Viewer, can_view, listed
from fedi.services import Services
from fedi.store.models import Actor, Follow, Group, Post
from fedi.web.auth import current_user
from fedi.web.templating import STYLESHEET, STYLESHEET_BYTES, templates


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def index(request: Request) -> Response:
    services = _services(request)
    async with services.sessionmaker() as session:
        # Hidden groups are listed nowhere.
        groups = list(
            (
                await session.execute(
                    select(Actor).join(Group, Group.actor_id == Actor.id)
                    .where(Actor.local, Actor.type == "Group", Group.privacy != "hidden")
                    .order_by(Actor.username)
                )
            ).scalars()
        )
    return templates.TemplateResponse(
        request, "index.html", {"groups": groups, "settings": services.settings,
                                "user": await current_user(request)}
    )


async def render_actor(request: Request, actor: Actor) -> Response:
    services = _services(request)
    async with services.sessionmaker() as session:
        members = (
            await session.execute(
                select(func.count()).select_from(Follow)
                .where(Follow.target_id == actor.id, Follow.state == "accepted")
            )
        ).scalar_one()
        config = await session.get(Group, actor.id) if actor.type == "Group" else None
        # A group page lists its public threads, pinned first; a user page their public posts.
        # Pages are for anyone, so only what privacy.access lists publicly appears here.
        conditions = (
            [Post.group_id == actor.id, Post.in_reply_to.is_(None)]
            if actor.type == "Group" else [Post.author_id == actor.id]
        )
        candidates = (
            await session.execute(
                select(Post, Actor)
                .join(Actor, Actor.id == Post.author_id)
                .where(*conditions, Post.deleted_at.is_(None), Post.visibility == "public",
                       Post.held.is_(None))
                .order_by(Post.pinned_at.is_(None), Post.published.desc())
                .limit(50)
            )
        ).all()
        # Silenced servers' content stays out of public listings (members still get it).
        posts = [
            (p, a) for p, a in candidates
            if listed(await facts_for(session, p))
            and (a.local or not await services.domain_policy.is_silenced(a.domain))
        ]
        # Not Post.reply_count: that counts members-only, held and removed replies too.
        replies = await visible_replies(session, [p.uri for p, _ in posts])
    return templates.TemplateResponse(
        request,
        "actor.html",
        {
            "actor": actor,
            "handle": f"@{actor.username}@{services.settings.domain}",
            "members": members,
            "posts": [
                (p, a, Markup(p.content), iso(p.published), replies.get(p.uri, 0))  # noqa: S704
                for p, a in posts
            ],
            "rules": json.loads(config.rules or "[]") if config else [],
            "join_policy": config.join_policy if config else None,
            "settings": services.settings,
            "user": await current_user(request),
        },
    )


async def render_post(
    request: Request, post: Post, author: Actor | None, viewer: Viewer
) -> Response:
    """A post with the rest of its thread: the parts this viewer may see."""
    services = _services(request)
    async with services.sessionmaker() as session:
        candidates = list(
            (
                await session.execute(
                    select(Post, Actor)
                    .join(Actor, Actor.id == Post.author_id)
                    .where(Post.thread_id == post.thread_id, Post.deleted_at.is_(None))
                    .order_by(Post.published)
                    .limit(500)
                )
            ).all()
        ) if post.thread_id else [(post, author)]
        thread = [(p, a) for p, a in candidates if can_view(await facts_for(session, p), viewer)]
        root = await session.get(Post, post.thread_id) if post.thread_id else post
        if root is not None and not can_view(await facts_for(session, root), viewer):
            root = None
    return templates.TemplateResponse(
        request,
        "post.html",
        {
            "post": post,
            "title": root.name if root else post.name,
            # Content was sanitised with nh3 when stored (fedi.content).
            "thread": [
                (p, a, Markup(p.content), iso(p.published)) for p, a in thread  # noqa: S704
            ],
            "settings": services.settings,
            "user": await current_user(request),
        },
    )


async def stylesheet(_request: Request) -> Response:
    """The pages' only style, as a file: the Content-Security-Policy allows no inline style."""
    return Response(STYLESHEET_BYTES, media_type="text/css",
                    headers={"Cache-Control": "public, max-age=3600"})


routes = [Route("/", index), Route(f"/static/{STYLESHEET}", stylesheet)]
