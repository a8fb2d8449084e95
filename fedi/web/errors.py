"""Error answers: the site's own page for a browser, JSON for ActivityPub and API clients.

`http_error` answers every HTTPException a route or the router raises (404, 403, 405, 413…);
`server_error` answers anything unhandled (500). A 500 shows no traceback and nothing of the
exception: it logs the exception under a request id and shows that id, so a person can quote
it to the admin and the admin can find the log line.
"""

from __future__ import annotations

import http
import logging
import secrets
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from fedi.config import Settings
from fedi.web.accesslog import route_of
from fedi.web.auth import render
from fedi.web.headers import HEADERS
from fedi.web.templating import templates

log = logging.getLogger("fedi.web.errors")

JSON_MEDIA_TYPES = ("application/activity+json", "application/ld+json", "application/json")
# Machine endpoints answer in JSON whatever the client accepts.
JSON_PATH_PREFIXES = ("/api/", "/.well-known/", "/nodeinfo/", "/oauth/")
JSON_PATH_SUFFIXES = ("/inbox", "/outbox")

HEADINGS = {
    400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Page not found",
    405: "Not here", 410: "Gone", 413: "Too large", 429: "Too many requests",
    500: "Something went wrong", 503: "Busy",
}
TEXTS = {
    400: "The request could not be understood; nothing was changed.",
    403: "You may not do that here; nothing was changed.",
    404: "There is nothing at this address, or it is not yours to see.",
    405: "This address does not take that kind of request; nothing was changed.",
    410: "What was here has been deleted.",
    413: "What you sent is too large; nothing was changed.",
    429: "Too many requests in a short time: wait a moment and try again.",
    500: "The server failed while answering, and has logged it. What you sent may not have "
         "been saved: try again, and if it keeps failing tell the admin the request id.",
}


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    if any(media in accept for media in JSON_MEDIA_TYPES):
        return True
    path = request.url.path
    return path.startswith(JSON_PATH_PREFIXES) or path.endswith(JSON_PATH_SUFFIXES) or (
        path == "/inbox")


def _text(status: int, detail: str) -> str:
    """Our own routes raise HTTPException(code, "a reason for people"); the default detail
    is only the status phrase, which says less than our text."""
    try:
        default = http.HTTPStatus(status).phrase
    except ValueError:
        default = ""
    if detail and detail != default:
        return detail
    return TEXTS.get(status, "The request could not be answered.")


async def http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    status, headers = exc.status_code, dict(exc.headers or {})
    if status in (204, 304):
        return Response(status_code=status, headers=headers)
    headers["Vary"] = "Accept"
    text = _text(status, exc.detail)
    if wants_json(request):
        return JSONResponse({"error": text}, status_code=status, headers=headers)
    response = await render(request, "error.html", {
        "status": status, "heading": HEADINGS.get(status, "Error"), "text": text,
        "request_id": None,
    }, status=status)
    response.headers.update(headers)
    return response


async def server_error(request: Request, exc: Exception) -> Response:
    """Never the exception's text: it may hold a query, a path or a secret."""
    if isinstance(exc, ClientDisconnect):
        # Not a fault of ours: the client left mid-request (web.connections logs that
        # line); nobody reads this answer, and a traceback would only be noise.
        return Response(status_code=400)
    request_id = secrets.token_hex(8)
    # The route's template, not the path: a path may carry a token (SECURITY: access log).
    log.error("unhandled error in %s %s, request id %s", request.method,
              route_of(request.scope), request_id, exc_info=exc)
    # Outside every middleware: the security headers are added here.
    headers = {name.decode(): value.decode() for name, value in HEADERS}
    headers |= {"X-Request-Id": request_id, "Vary": "Accept", "Cache-Control": "no-store"}
    if wants_json(request):
        return JSONResponse({"error": "internal server error", "request_id": request_id},
                            status_code=500, headers=headers)
    # No database work here: the failure may be the database. The page has no user.
    context: dict[str, Any] = {
        "settings": _settings(request), "user": None, "csrf": "", "status": 500,
        "heading": HEADINGS[500], "text": TEXTS[500], "request_id": request_id,
    }
    return templates.TemplateResponse(request, "error.html", context, status_code=500,
                                      headers=headers)


def _settings(request: Request) -> Settings:
    services = getattr(request.app.state, "services", None)
    settings = getattr(services, "settings", None)
    return settings if isinstance(settings, Settings) else Settings()


exception_handlers: dict[Any, Any] = {HTTPException: http_error, Exception: server_error}
