"""HTTP connection deadlines for `fedi serve` (slowloris and idle connections).

uvicorn closes a keep-alive connection that is idle after a response, but it sets no
deadline for a request to arrive: a client that opens a connection and sends nothing, or
trickles its request a byte at a time, holds a connection (and its memory) for ever. This
protocol gives each request's head `header_timeout` seconds from its first byte (or from the
connection's opening) and its body `body_timeout` seconds once the head is in; a late
request is answered 408 with the reason and the connection is closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger(__name__)

# A callable the app's lifespan state may hold: called as the server starts to stop, so that
# responses that never end on their own (live-update streams) end now and the server's wait
# for open connections is short.
DRAINING = "fedi.draining"


def _answer_408(transport: asyncio.Transport, reason: str) -> None:
    body = reason.encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    transport.write(head + body)
    transport.close()


class DeadlineProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.app = _quiet_when_gone(self.app)
        self._header_timeout = header_timeout
        self._body_timeout = body_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, reason)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, reason: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            self.transport.close()  # the app has answered already; nothing more to say
            return
        _answer_408(self.transport, reason)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._header_timeout,
                  f"request headers not received within {self._header_timeout:g} s")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A later request on a kept-alive connection gets its own deadline.
        if self._deadline is None:
            self._arm(self._header_timeout,
                      f"request headers not received within {self._header_timeout:g} s")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self._body_timeout,
                  f"request body not received within {self._body_timeout:g} s")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        draining = self.app_state.get(DRAINING)
        if callable(draining):
            draining()
        super().shutdown()


def _quiet_when_gone(app: Any) -> Any:
    """A request whose client went away (or was cut off by a deadline) ends without a
    traceback: the app's "client disconnected" error has no one to be answered to."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        gone = False

        async def watched_receive() -> Any:
            nonlocal gone
            message = await receive()
            if message.get("type") == "http.disconnect":
                gone = True
            return message

        try:
            await app(scope, watched_receive, send)
        except Exception:
            if not gone:
                raise
            log.info("%s %s: the client went away before its request was read",
                     scope.get("method", ""), scope.get("path", ""))

    return guarded


def protocol(header_timeout: float, body_timeout: float) -> Any:
    """The `http` protocol to give uvicorn (a partial, so it pickles for --workers N)."""
    return functools.partial(
        DeadlineProtocol, header_timeout=header_timeout, body_timeout=body_timeout
    )
