"""HTML pages (Jinja2, autoescaped). Post bodies are sanitised before they are stored."""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from fedi.activitypub.activities import iso
from fedi.services import Services
from fedi.store.models import Actor, Follow, Post

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
        column = Post.group_id if actor.type == "Group" else Post.author_id
        posts = list(
            (
                await session.execute(
                    select(Post, Actor)
                    .join(Actor, Actor.id == Post.author_id)
                    .where(column == actor.id, Post.deleted_at.is_(None),
                           Post.visibility == "public")
                    .order_by(Post.published.desc())
                    .limit(50)
                )
            ).all()
        )
    return templates.TemplateResponse(
        request,
        "actor.html",
        {
            "actor": actor,
            "handle": f"@{actor.username}@{services.settings.domain}",
            "members": members,
            "posts": [(p, a, Markup(p.content), iso(p.published)) for p, a in posts],  # noqa: S704
            "settings": services.settings,
        },
    )


async def render_post(request: Request, post: Post, author: Actor | None) -> Response:
    services = _services(request)
    return templates.TemplateResponse(
        request,
        "post.html",
        {
            "post": post,
            "author": author,
            # Content was sanitised with nh3 when stored (fedi.content).
            "content": Markup(post.content),  # noqa: S704
            "published": iso(post.published),
            "settings": services.settings,
        },
    )


routes = [Route("/", index)]
