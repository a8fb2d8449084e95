"""What every status endpoint shares: the status in the path, found through the privacy gate
("not yours to see" and "not there" are the same 404), and its Markdown source."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse

from fedi.api.entities import Presenter
from fedi.api.errors import ApiError, not_found
from fedi.api.pagination import MAX_ID
from fedi.content import html_to_text
from fedi.store.models import Actor, Post


def status_id(raw: str) -> int:
    """A status id from the path or a parameter; anything that is not one is a 404."""
    if not raw.isdigit() or int(raw) > MAX_ID:
        raise not_found()
    return int(raw)


async def visible_post(p: Presenter, raw: str) -> Post:
    post = await p.session.get(Post, status_id(raw))
    if post is None or not await p.visible([post]):
        raise not_found()
    return post


async def rendered(p: Presenter, post: Post) -> dict[str, Any]:
    found = await p.status(post)
    if found is None:
        raise not_found()
    return found


async def acting(session: AsyncSession, person: Actor) -> Actor:
    """The caller's person in this session (the token's row came from another)."""
    found = await session.get(Actor, person.id)
    if found is None:
        raise ApiError(401, "The access token is invalid")
    return found


def source_text(post: Post) -> str:
    """The Markdown the author wrote, when the post keeps it; else its text."""
    try:
        source = json.loads(post.document).get("source")
    except (ValueError, TypeError, AttributeError):
        source = None
    if isinstance(source, dict) and isinstance(source.get("content"), str):
        return str(source["content"])
    return html_to_text(post.content)


def status_path(request: Request) -> str:
    return str(request.path_params["id"])


def json_answer(body: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, headers=headers)
