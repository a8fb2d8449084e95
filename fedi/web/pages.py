"""HTML pages (Jinja2, autoescaped). Post bodies are sanitised before they are stored."""

from __future__ import annotations

import json
from pathlib import Path

from markupsafe import Markup
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from fedi.activitypub.activities import iso
from fedi.services import Services
from fedi.store.models import Actor, Follow, Group, Post

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES))


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def index(request: Request) -> Response:
    services = _services(request)
    async with services.sessionmaker() as session:
        groups = list(
            (
                await session.execute(
                    select(Actor).where(Actor.local, Actor.type == "Group").order_by(Actor.username)
                )
            ).scalars()
        )
    return templates.TemplateResponse(
        request, "index.html", {"groups": groups, "settings": services.settings}
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
        # A group page lists its threads, pinned first; a user page their posts.
        conditions = (
            [Post.group_id == actor.id, Post.in_reply_to.is_(None)]
            if actor.type == "Group" else [Post.author_id == actor.id]
        )
        posts = list(
            (
                await session.execute(
                    select(Post, Actor)
                    .join(Actor, Actor.id == Post.author_id)
                    .where(*conditions, Post.deleted_at.is_(None), Post.visibility == "public")
                    .order_by(Post.pinned_at.is_(None), Post.published.desc())
                    .limit(50)
                )
            ).all()
        )
        config = await session.get(Group, actor.id) if actor.type == "Group" else None
    return templates.TemplateResponse(
        request,
        "actor.html",
        {
            "actor": actor,
            "handle": f"@{actor.username}@{services.settings.domain}",
            "members": members,
            "posts": [(p, a, Markup(p.content), iso(p.published)) for p, a in posts],  # noqa: S704
            "rules": json.loads(config.rules or "[]") if config else [],
            "join_policy": config.join_policy if config else None,
            "settings": services.settings,
        },
    )


async def render_post(request: Request, post: Post, author: Actor | None) -> Response:
    """A post with the rest of its thread."""
    services = _services(request)
    async with services.sessionmaker() as session:
        thread = list(
            (
                await session.execute(
                    select(Post, Actor)
                    .join(Actor, Actor.id == Post.author_id)
                    .where(Post.thread_id == post.thread_id, Post.deleted_at.is_(None),
                           Post.visibility == "public")
                    .order_by(Post.published)
                    .limit(500)
                )
            ).all()
        ) if post.thread_id else [(post, author)]
        root = await session.get(Post, post.thread_id) if post.thread_id else post
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
        },
    )


routes = [Route("/", index)]
