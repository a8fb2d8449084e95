"""CORS as Mastodon answers it, for browser clients (Elk, Phanpy) on other origins: the API,
the OAuth token and revoke endpoints, app registration, host-meta, NodeInfo and the
authorization-server metadata. Tokens travel in the Authorization header, never cookies,
so any origin may call. Also: `/api/...x/` is served as `/api/...x` (no redirect; WebSocket
clients fail on a 301)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIXES = ("/api/", "/oauth/token", "/oauth/revoke", "/.well-known/", "/nodeinfo/")
ALLOW_HEADERS = b"Authorization, Content-Type, Idempotency-Key, Accept"
EXPOSE_HEADERS = b"Link, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-Request-Id"
METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"


class ApiCors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not path.startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        if path.startswith("/api/") and path.endswith("/") and len(path) > 5:
            scope = {**scope, "path": path.rstrip("/"), "raw_path": path.rstrip("/").encode()}
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", b"86400"),
            ]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *[(n, v) for n, v in message.get("headers", [])
                      if n.lower() != b"access-control-allow-origin"],
                    (b"access-control-allow-origin", b"*"),
                    (b"access-control-expose-headers", EXPOSE_HEADERS),
                ]
            await send(message)

        await self.app(scope, receive, with_cors)
