"""Request latency by route and the access log, as one pure ASGI middleware.

Routes are named by their template (`/groups/{name:str}/inbox`), never by the raw path: the
metric's series stay bounded, and no token in a path (an invite link) or query string reaches
a log. An access-log line has the method, route, status, duration and client address, and
nothing else of the request: no headers (Authorization, Cookie, Signature), no body.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fedi import metrics

log = logging.getLogger("fedi.access")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # no route: 404s of every path share one series


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class AccessLog:
    def __init__(self, app: ASGIApp, *, log_requests: bool = True) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception, or a client that went away

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = route_of(scope)
        method = scope.get("method", "")
        method = method if method in METHODS else "OTHER"
        metrics.http_request(route, method, status, seconds)
        if self.log_requests:
            client = scope.get("client")
            log.info(
                "%s %s %d %.1fms %s", method, route, status, seconds * 1000,
                client[0] if client else "-",
                extra={"access": {
                    "method": method, "route": route, "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "remote": client[0] if client else None,
                }},
            )
