"""Endpoints apps call for features fedi does not have (lists, filters, announcements,
trends, custom emojis, push …): well-formed empty answers, never a 404 where an app would
wait or fail (the official app hangs on some; others stall). Each asks for the scope
Mastodon asks for, so a token that could not call Mastodon's cannot call ours.

Push subscriptions answer as Mastodon does without one (GET → 404 "Record not found"), and
creating one is refused plainly: there is no push here (the streaming API carries updates).
An account's featured tags and lists are answered by fedi.api.accounts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.api.auth import Caller, endpoint
from fedi.api.errors import ApiError, not_found

Endpoint = Callable[[Request], Awaitable[Response]]


def empty(scope: str | None, *, public: bool = False) -> Endpoint:
    """An endpoint answering [] to a caller the scope lets in."""

    async def answer(request: Request, caller: Caller) -> Response:
        return JSONResponse([])

    return endpoint(scope, public=public)(answer)


@endpoint("read:accounts")
async def preferences(request: Request, caller: Caller) -> Response:
    """Mastodon's defaults: fedi keeps no per-person posting or reading preferences yet."""
    caller.need_person()
    found: dict[str, Any] = {
        "posting:default:visibility": "public",
        "posting:default:sensitive": False,
        "posting:default:language": None,
        "reading:expand:media": "default",
        "reading:expand:spoilers": False,
    }
    return JSONResponse(found)


@endpoint("push")
async def push_subscription(request: Request, caller: Caller) -> Response:
    if request.method == "DELETE":
        return JSONResponse({})
    if request.method == "POST":
        raise ApiError(422, "Validation failed: push is not supported here; use streaming")
    raise not_found()


EMPTY: list[tuple[str, Endpoint]] = [
    ("/api/v1/lists", empty("read:lists")),
    ("/api/v1/filters", empty("read:filters")),
    ("/api/v2/filters", empty("read:filters")),
    ("/api/v1/announcements", empty(None)),
    ("/api/v1/custom_emojis", empty(None, public=True)),
    ("/api/v1/trends", empty(None, public=True)),
    ("/api/v1/trends/tags", empty(None, public=True)),
    ("/api/v1/trends/statuses", empty(None, public=True)),
    ("/api/v1/trends/links", empty(None, public=True)),
    ("/api/v1/followed_tags", empty("read:follows")),
    ("/api/v1/conversations", empty("read:statuses")),
    ("/api/v1/suggestions", empty("read")),
    ("/api/v2/suggestions", empty("read")),
    ("/api/v1/domain_blocks", empty("read:blocks")),
    ("/api/v1/featured_tags", empty("read:accounts")),
    ("/api/v1/endorsements", empty("read:accounts")),
    ("/api/v1/scheduled_statuses", empty("read:statuses")),
]

routes: list[BaseRoute] = [
    *(Route(path, handler, methods=["GET"]) for path, handler in EMPTY),
    Route("/api/v1/preferences", preferences, methods=["GET"]),
    Route("/api/v1/push/subscription", push_subscription,
          methods=["GET", "POST", "PUT", "DELETE"]),
]
