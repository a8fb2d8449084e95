"""Content negotiation: the same URL serves ActivityPub JSON or an HTML page."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fedi.activitypub.vocab import AP_MEDIA_TYPE

AP_ACCEPT_MARKERS = ("application/activity+json", "application/ld+json")


def wants_activitypub(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return any(marker in accept for marker in AP_ACCEPT_MARKERS)


class ActivityResponse(Response):
    media_type = AP_MEDIA_TYPE

    def __init__(self, content: dict[str, Any], status_code: int = 200) -> None:
        super().__init__(
            json.dumps(content, ensure_ascii=False).encode(),
            status_code=status_code,
            headers={"Vary": "Accept, Signature"},
        )


def not_found() -> NoReturn:
    """Forbidden and missing look the same (SECURITY 17): fedi.web.errors answers JSON to
    machines and the site's 404 page to browsers."""
    raise HTTPException(404)
