"""HTTP/1.1 POSTs for deliveries: one asyncio protocol per connection, kept alive per host.

Why not aiohttp here: a delivery needs one request and three things of its answer (status,
Retry-After, a short excerpt of the body). On loopback an aiohttp POST on a new connection
cost 195 µs of CPU against 60 µs for this path, and fan-out makes one such POST per member
server. Fetches keep aiohttp (redirects, decompression, streamed caps on large bodies).

The guards are the same as on every outbound request:
- the caller vetted the URL with `check_url` (scheme, userinfo, IP literals);
- names are resolved here, and refused whole when any address is forbidden
  (`netguard.check_resolved`, as `GuardedResolver` does for aiohttp), then only those
  addresses are connected to;
- connect and total timeouts; the answer's body is kept up to a cap, and a connection whose
  answer was cut short, or which says `Connection: close`, is closed rather than reused.

Concurrency is not bounded here: the delivery worker bounds it, per host and in total.
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

import httptools
from yarl import URL

from fedi.activitypub.netguard import check_resolved
from fedi.errors import FetchError

DNS_TTL: Final = 10.0  # seconds a resolved name is reused (aiohttp's default too)
MAX_CACHED_NAMES: Final = 10_000
# A kept-alive connection unused this long is closed (Mastodon's request pool: 30 s). A group
# that posts again within it reaches its member servers without a new connection each: no
# connect round trip for them, and about a tenth less CPU per delivery (bench.serve_fanout).
IDLE_SECONDS: Final = 30.0
MAX_HEAD_BYTES: Final = 64 * 1024  # an answer's header names and values, at most
# Raw bytes before the headers end, at most: httptools gathers one header's value whole
# before handing it over, so one endless header is stopped here. (Above any one read, so
# headers and a body arriving together are never mistaken for it.)
MAX_RAW_HEAD_BYTES: Final = 1024 * 1024
# Kept-alive connections in all: one per member server of a large group. Each holds a file
# descriptor, so never more than a quarter of the open-file limit: sockets in flight, clients
# and the database need the rest.
MAX_IDLE: Final = 4096
IDLE_SHARE_OF_FILES: Final = 4


def host_key(url: URL) -> str:
    """The Host header value, as signatures cover it and per-host memory is keyed: lower
    case, IPv6 in brackets, the port only when not the scheme's default."""
    host = (url.raw_host or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{url.port}"


class ConnectError(FetchError):
    """No connection could be made (refused, unreachable, the name does not resolve, or the
    connect timeout): no request was sent."""


class RefusedAddress(FetchError):
    """The name resolved to an address the guard forbids: nothing was sent."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes  # at most the cap


class _Lost(Exception):
    """The connection ended before a whole answer; `answered` says whether any byte came."""

    def __init__(self, answered: bool, reason: str) -> None:
        super().__init__(reason)
        self.answered = answered


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: sends a request, parses its answer with httptools."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._started = False  # a byte of the answer came
        self._headers_done = False
        self._head_bytes = self._raw_head_bytes = 0

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport, hence no isinstance).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # nothing was asked: an idle connection's bytes would confuse the next
            return
        self._started = True
        if not self._headers_done:
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > MAX_RAW_HEAD_BYTES:
                self._fail(_Lost(True, f"answer headers over {MAX_RAW_HEAD_BYTES} bytes"))
                self.close()
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(_Lost(True, f"unparsable HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and self._reads_to_close():
            self._finish(reusable=False)  # a body delimited by the end of the connection
        else:
            self._fail(_Lost(self._started, f"connection closed: {exc or 'by the server'}"))

    # -- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._waiter is None or self._waiter.done():
            self.reusable = False  # a second answer to one request: the stream is not to trust
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:  # a server must not fill our memory with them
            self._fail(_Lost(True, f"answer headers over {MAX_HEAD_BYTES} bytes"))
            self.close()
            return
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_body(self, chunk: bytes) -> None:
        room = self.cap - len(self._body)
        self._body += chunk[:room]
        if len(chunk) > room:  # cut short: the rest is not read, so the connection goes
            self._finish(reusable=False)
            self.close()

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers, self._headers_done = {}, False
            return  # (its headers still count towards MAX_HEAD_BYTES: no endless interims)
        self._finish(reusable=self._parser.should_keep_alive())

    # -- use ---------------------------------------------------------------------------------
    def request(self, head: bytes, body: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._status, self._headers, self._body = 0, {}, bytearray()
        self._started = self._headers_done = self.reusable = False
        self._head_bytes = self._raw_head_bytes = 0
        self.transport.write(head + body)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _reads_to_close(self) -> bool:
        return "content-length" not in self._headers and \
            "chunked" not in self._headers.get("transfer-encoding", "").lower()

    def _finish(self, *, reusable: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self.reusable = reusable and not self.closed
            waiter.set_result(Answer(self._status, self._headers, bytes(self._body)))

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


Key = tuple[str, str, int]  # scheme, host, port


class Poster:
    """POSTs over kept-alive HTTP/1.1 connections; `close` ends them all."""

    def __init__(
        self, *, allow_private: bool, connect_timeout: float, total_timeout: float,
        body_cap: int, user_agent: str,
    ) -> None:
        self._allow_private = allow_private
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._cap = body_cap
        self._user_agent = user_agent
        self._idle: dict[Key, list[_Connection]] = {}  # per host, the latest used last
        self._order: OrderedDict[_Connection, Key] = OrderedDict()  # all, the oldest first
        self._names: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._idle_cap: int | None = None  # read once the server has raised its file limit
        self._reaper: asyncio.TimerHandle | None = None  # closes what is idle too long

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for connection in self._order:
            connection.close()
        self._idle.clear()
        self._order.clear()

    async def post(self, url: URL, headers: Mapping[str, str], body: bytes) -> Answer:
        """POST `body` to `url` (already vetted by `check_url`) with `headers` and Host.

        ConnectError when no connection could be made, RefusedAddress when the name resolves
        to a forbidden address, TimeoutError past the total timeout, FetchError otherwise.
        """
        host = (url.raw_host or "").lower()
        port = url.port or (443 if url.scheme == "https" else 80)
        key: Key = (url.scheme, host, port)
        authority = host_key(url)
        head = self._head(url, authority, headers, len(body))
        async with asyncio.timeout(self._total_timeout):
            connection = self._reuse(key)
            if connection is not None:
                try:
                    return await self._exchange(key, connection, head, body)
                except _Lost as exc:
                    if exc.answered:
                        raise FetchError(f"request to {authority} failed: {exc}") from None
                    # The server closed the idle connection as we sent: once more, fresh.
            connection = await self._connect(key)
            try:
                return await self._exchange(key, connection, head, body)
            except _Lost as exc:
                raise FetchError(f"request to {authority} failed: {exc}") from None

    def _head(self, url: URL, authority: str, headers: Mapping[str, str], length: int) -> bytes:
        lines = [f"POST {url.raw_path_qs or '/'} HTTP/1.1",
                 f"User-Agent: {self._user_agent}", f"Content-Length: {length}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if not any(name.lower() == "host" for name in headers):  # a signer sets it
            lines.insert(1, f"Host: {authority}")
        head = "\r\n".join(lines)
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            raise FetchError("refusing a header with a line break")
        try:
            return (head + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError:
            raise FetchError("refusing a header that is not Latin-1") from None

    async def _exchange(
        self, key: Key, connection: _Connection, head: bytes, body: bytes
    ) -> Answer:
        try:
            answer = await connection.request(head, body)
        except BaseException:
            connection.close()
            raise
        if connection.reusable:
            self._keep(key, connection)
        else:
            connection.close()
        return answer

    # -- the pool ----------------------------------------------------------------------------
    def _reuse(self, key: Key) -> _Connection | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            connection = pool.pop()  # the most recently used: the likeliest alive
            del self._order[connection]
            if not pool:
                del self._idle[key]
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    def _keep(self, key: Key, connection: _Connection) -> None:
        now = time.monotonic()
        connection.idle_since = now
        self._idle.setdefault(key, []).append(connection)
        self._order[connection] = key
        self._evict(now)
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._reap)

    def _reap(self) -> None:
        """Close what has been idle too long, also when nothing is sent any more."""
        now = time.monotonic()
        self._evict(now)
        self._reaper = None
        if self._order:
            due = next(iter(self._order)).idle_since + IDLE_SECONDS - now
            self._reaper = asyncio.get_running_loop().call_later(max(due, 0.0), self._reap)

    def _idle_limit(self) -> int:
        if self._idle_cap is None:
            files, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            self._idle_cap = max(1, min(MAX_IDLE, files // IDLE_SHARE_OF_FILES))
        return self._idle_cap

    def _evict(self, now: float) -> None:
        """The oldest go first: past the idle time, or to stay within the cap."""
        cap = self._idle_limit()
        while self._order:
            oldest, oldest_key = next(iter(self._order.items()))
            if len(self._order) <= cap and now - oldest.idle_since < IDLE_SECONDS:
                break
            del self._order[oldest]
            pool = self._idle[oldest_key]
            pool.remove(oldest)
            if not pool:
                del self._idle[oldest_key]
            oldest.close()

    # -- connecting --------------------------------------------------------------------------
    async def _connect(self, key: Key) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context = self._context() if scheme == "https" else None
        failures: list[str] = []
        try:
            async with asyncio.timeout(self._connect_timeout):
                for address in await self._addresses(host, port):
                    try:
                        _, connection = await loop.create_connection(
                            lambda: _Connection(self._cap), address, port, ssl=context,
                            server_hostname=host if context is not None else None)
                        return connection
                    except (OSError, ssl.SSLError) as exc:
                        failures.append(f"{address}: {exc}")
        except TimeoutError:
            raise ConnectError(f"could not connect to {host}:{port}: timed out") from None
        raise ConnectError(f"could not connect to {host}:{port}: {'; '.join(failures)}")

    async def _addresses(self, host: str, port: int) -> list[str]:
        now = time.monotonic()
        cached = self._names.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            literal = str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            pass
        else:  # an IP literal: `check_url` judged it already
            self._remember(host, port, now, [literal])
            return [literal]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise ConnectError(f"could not connect to {host}:{port}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        try:
            check_resolved(host, addresses, self._allow_private)
        except FetchError as exc:
            raise RefusedAddress(exc.reason) from None
        self._remember(host, port, now, addresses)
        return addresses

    def _remember(self, host: str, port: int, now: float, addresses: list[str]) -> None:
        if len(self._names) >= MAX_CACHED_NAMES:
            self._names.clear()
        self._names[(host, port)] = (now + DNS_TTL, addresses)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl
