"""Mastodon's streaming API: live events over a WebSocket or server-sent events.

- WebSocket `GET /api/v1/streaming` (with or without a trailing slash): the token in the
  Authorization header, `?access_token=`, or `Sec-WebSocket-Protocol` (then echoed in the
  handshake, or Chrome drops the socket). `?stream=` (and `tag=`) subscribes at once; the
  client sends `{"type": "subscribe" | "unsubscribe", "stream": ..., "tag": ...}` for more,
  multiplexed on one socket. Frames are text: `{"stream": [...], "event": "update",
  "payload": "<JSON text>"}`; a bad message gets `{"error": ..., "status": 400}`.
- Server-sent events: `GET /api/v1/streaming/user`, `/user/notification`, `/public`,
  `/public/local`, `/public/remote`, `/hashtag?tag=`, `/hashtag/local?tag=`, one stream
  each, `event:`/`data:` lines and a `:thump` every KEEPALIVE_SECONDS;
  `/api/v1/streaming/health` answers OK.

A token that is missing, unknown or revoked is refused before the stream opens (401), one
without the stream's scope too (403); a token revoked later ends the stream within
RECHECK_SECONDS. Events come from this process's hub (`fedi.live`: every process hears
every commit on PostgreSQL) and each is decided per client by `fedi.api.streams`. A client
that reads too slowly is dropped by the hub (its queue is bounded) or when a frame cannot be
sent within SEND_SECONDS; WebSocket pings are uvicorn's (every 20 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from fedi.accounts import oauth
from fedi.api.auth import Caller, bearer, endpoint
from fedi.api.errors import ApiError
from fedi.api.streams import Frame, Shared, Stream, StreamError, Watcher, parse_stream
from fedi.live.hub import Closed, Subscription
from fedi.services import Services
from fedi.store.models import Actor

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
RECHECK_SECONDS = 60.0  # how long a revoked token's stream may outlive it
SEND_SECONDS = 10.0  # a client that takes longer to take one frame is dropped
MAX_MESSAGE = 4096  # a subscribe message is small
GOING_AWAY = 1001  # the server is stopping
TRY_AGAIN_LATER = 1013  # dropped for reading too slowly, or no room for another stream
INVALID_TOKEN = 4001


def _services(connection: Request | WebSocket) -> Services:
    services: Services = connection.app.state.services
    return services


def _shared(connection: Request | WebSocket) -> Shared:
    state = connection.app.state
    if not hasattr(state, "api_streams"):
        services = _services(connection)
        state.api_streams = Shared(services.sessionmaker, services.settings.base_url,
                                   services.domain_policy)
    shared: Shared = state.api_streams
    return shared


async def _authorize(services: Services, raw: str | None) -> tuple[oauth.Grant, Actor] | None:
    """The token's grant and person, or None (missing, unknown, revoked, app-only)."""
    if not raw:
        return None
    async with services.sessionmaker() as session:
        grant = await oauth.find_token(session, raw)
        person = await session.get(Actor, grant.actor_id) if grant and grant.actor_id else None
    return (grant, person) if grant is not None and person is not None else None


class Feed:
    """A watcher's frames from a hub subscription, until the stream should end."""

    def __init__(self, services: Services, watcher: Watcher, subscription: Subscription,
                 token: str) -> None:
        self.services = services
        self.watcher = watcher
        self.subscription = subscription
        self.token = token
        self.checked = time.monotonic()
        self.ended_because = GOING_AWAY

    async def next(self) -> list[Frame] | None:
        """The frames of the next event for this watcher ([] after a quiet keep-alive
        interval); None when the stream is over."""
        try:
            event = await self.subscription.next(KEEPALIVE_SECONDS)
        except Closed:
            self.ended_because = TRY_AGAIN_LATER if self.subscription.dropped else GOING_AWAY
            return None
        if time.monotonic() - self.checked > RECHECK_SECONDS:
            if await _authorize(self.services, self.token) is None:
                self.ended_because = INVALID_TOKEN
                return None
            self.checked = time.monotonic()
        if event is None:
            return []
        try:
            return await self.watcher.frames(event)
        except Exception as exc:  # one event that cannot be shown does not end the stream
            log.warning("streaming: an event was not sent (%s)", type(exc).__name__)
            return []

    def close(self) -> None:
        self.subscription.close()


# -- WebSocket ----------------------------------------------------------------------------------


def _token(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The token, and the subprotocol to echo when it came as one."""
    header = websocket.headers.get("authorization", "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip(), None
    if websocket.query_params.get("access_token"):
        return websocket.query_params["access_token"], None
    offered = websocket.scope.get("subprotocols") or []
    if offered:
        return str(offered[0]), str(offered[0])
    return None, None


async def _refuse(websocket: WebSocket, status: int, error: str) -> None:
    """An HTTP answer to the handshake where the server can send one, else a close."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else {}
        await websocket.send_denial_response(
            JSONResponse({"error": error}, status_code=status, headers=headers))
    else:
        await websocket.close(INVALID_TOKEN if status == 401 else 1008, error[:120])


def _message(text: str, watcher: Watcher) -> str | None:
    """Apply a client's subscribe/unsubscribe; an error frame's text when it is wrong."""
    try:
        data = json.loads(text) if len(text) <= MAX_MESSAGE else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("type") not in ("subscribe", "unsubscribe"):
        return _error('Send {"type": "subscribe" or "unsubscribe", "stream": ...}', 400)
    name, tag = data.get("stream"), data.get("tag")
    try:
        stream = parse_stream(name if isinstance(name, str) else None,
                              tag if isinstance(tag, str) else None, watcher.grant)
    except StreamError as exc:
        return _error(exc.reason, exc.status)
    if data["type"] == "subscribe":
        watcher.subscribe(stream)
    else:
        watcher.unsubscribe(stream)
    return None


def _error(reason: str, status: int) -> str:
    return json.dumps({"error": reason, "status": status})


async def _send(websocket: WebSocket, text: str) -> None:
    async with asyncio.timeout(SEND_SECONDS):
        await websocket.send_text(text)


async def _read(websocket: WebSocket, watcher: Watcher) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None and message.get("bytes") is not None:
            text = message["bytes"].decode("utf-8", "replace")
        answer = _message(text or "", watcher)
        if answer is not None:
            await _send(websocket, answer)


async def _write(websocket: WebSocket, feed: Feed) -> None:
    while (frames := await feed.next()) is not None:
        for frame in frames:
            await _send(websocket, frame.json())


async def websocket_stream(websocket: WebSocket) -> None:
    services = _services(websocket)
    token, protocol = _token(websocket)
    found = await _authorize(services, token)
    if token is None or found is None:
        await _refuse(websocket, 401, "The access token is invalid")
        return
    watcher = Watcher(_shared(websocket), *found)
    named = websocket.query_params.get("stream")
    if named:
        try:
            watcher.subscribe(parse_stream(named, websocket.query_params.get("tag"),
                                           watcher.grant))
        except StreamError as exc:
            await _refuse(websocket, exc.status, exc.reason)
            return
    subscription = services.live.subscribe()
    if subscription is None:
        await _refuse(websocket, 503, "Too many streams now, or the server is stopping")
        return
    feed = Feed(services, watcher, subscription, token)
    code = GOING_AWAY
    try:
        await websocket.accept(subprotocol=protocol)
        reading = asyncio.create_task(_read(websocket, watcher))
        writing = asyncio.create_task(_write(websocket, feed))
        done, pending = await asyncio.wait({reading, writing},
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        failed = [t.exception() for t in done if t.exception() is not None]
        code = feed.ended_because
        if failed and not isinstance(failed[0], WebSocketDisconnect | OSError):
            code = TRY_AGAIN_LATER if isinstance(failed[0], TimeoutError) else 1011
            if code == 1011:
                log.warning("streaming: a WebSocket ended on %s", type(failed[0]).__name__)
    finally:
        feed.close()
        if websocket.application_state == WebSocketState.CONNECTED and (
                websocket.client_state == WebSocketState.CONNECTED):
            with contextlib.suppress(Exception):
                await websocket.close(code)


# -- server-sent events -------------------------------------------------------------------------


def _sse(frame: Frame) -> bytes:
    return f"event: {frame.event}\ndata: {frame.payload}\n\n".encode()


async def _events(feed: Feed) -> AsyncIterator[bytes]:
    try:
        yield b":)\n\n"
        while (frames := await feed.next()) is not None:
            if not frames:
                yield b":thump\n\n"
            for frame in frames:
                yield _sse(frame)
    finally:
        feed.close()


def _sse_stream(name: str) -> Callable[[Request], Awaitable[Response]]:
    @endpoint(None)
    async def stream(request: Request, caller: Caller) -> Response:
        person = caller.need_person()
        if caller.grant is None:  # endpoint() lets no call without a token through
            raise ApiError(401, "The access token is invalid")
        try:
            chosen: Stream = parse_stream(name, request.query_params.get("tag"), caller.grant)
        except StreamError as exc:
            raise ApiError(exc.status, exc.reason) from None
        services = _services(request)
        subscription = services.live.subscribe()
        if subscription is None:
            raise ApiError(503, "Too many streams now, or the server is stopping",
                           headers={"Retry-After": "30"})
        watcher = Watcher(_shared(request), caller.grant, person)
        watcher.subscribe(chosen)
        return StreamingResponse(
            _events(Feed(services, watcher, subscription, bearer(request) or "")),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return stream


async def health(_request: Request) -> Response:
    return PlainTextResponse("OK")


SSE_PATHS = {
    "user": "user", "user/notification": "user:notification", "public": "public",
    "public/local": "public:local", "public/remote": "public:remote", "hashtag": "hashtag",
    "hashtag/local": "hashtag:local",
}

routes: list[BaseRoute] = [
    WebSocketRoute("/api/v1/streaming", websocket_stream),
    Route("/api/v1/streaming/health", health),
    *[Route(f"/api/v1/streaming/{path}", _sse_stream(name)) for path, name in SSE_PATHS.items()],
]
