"""GET /api/v1/directory (the Explore tab's profile directory): this server's people and its
groups that are not hidden, newest or most recently active first."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.errors import unprocessable
from fedi.api.params import read_params
from fedi.store.models import Actor, Group, Post

MAX_LIMIT = 80


@endpoint(None, public=True)
async def directory(request: Request, caller: Caller) -> Response:
    params = await read_params(request)
    offset = params.integer("offset", 0, low=0, high=100_000) or 0
    limit = params.integer("limit", 40, low=1, high=MAX_LIMIT) or 40
    order = params.text("order", "active")
    if order not in ("active", "new"):
        raise unprocessable("order must be active or new", "order")
    params.flag("local")  # everything listed here is local; the flag is only checked
    last_post = (select(Post.author_id.label("actor_id"),
                        func.max(Post.published).label("at"))
                 .group_by(Post.author_id).subquery())
    query = (select(Actor)
             .outerjoin(Group, Group.actor_id == Actor.id)
             .outerjoin(last_post, last_post.c.actor_id == Actor.id)
             .where(Actor.local.is_(True), Actor.type.in_(("Person", "Group")),
                    or_(Group.actor_id.is_(None), Group.privacy != "hidden")))
    if order == "new":
        query = query.order_by(Actor.created_at.desc(), Actor.id.desc())
    else:
        query = query.order_by(func.coalesce(last_post.c.at, Actor.created_at).desc(),
                               Actor.id.desc())
    async with services_of(request).sessionmaker() as session:
        actors = list((await session.execute(query.offset(offset).limit(limit))).scalars())
        shown = await presenter(session, request, caller)
        return JSONResponse(await shown.accounts(actors))


@endpoint(None, public=True)
async def translation_languages(request: Request, caller: Caller) -> Response:
    """No translation service here: no language pairs."""
    return JSONResponse({})


routes: list[BaseRoute] = [
    Route("/api/v1/directory", directory),
    Route("/api/v1/instance/translation_languages", translation_languages),
]
