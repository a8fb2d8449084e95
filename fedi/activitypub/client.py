"""The one module that talks to the network for federation.

Every request: http(s) only, no userinfo, IP-literal hosts checked before connecting, names
checked at connect time by `GuardedResolver` (SECURITY 10); redirects never followed
automatically (SECURITY 3); bodies capped while streaming (SECURITY 13); fetched objects must be
served as ActivityPub (SECURITY 2) and carry the id they were fetched from (SECURITY 1).
"""

from __future__ import annotations

import email.utils
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Final

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from fedi.activitypub import jsonsafe
from fedi.activitypub.httpsig import Scheme, sign_request
from fedi.activitypub.keys import SigningKey
from fedi.activitypub.mediatypes import ACCEPT_AP, ACTIVITY_JSON, is_activitypub_media_type
from fedi.activitypub.netguard import GuardedResolver, check_url
from fedi.activitypub.poster import ConnectError, Poster, RefusedAddress, host_key
from fedi.errors import FetchError, ValidationError

ACCEPT_JRD: Final = "application/jrd+json, application/json"
POST_BODY_CAP: Final = 64 * 1024
EXCERPT_CHARS: Final = 200
MAX_REMEMBERED_HOSTS: Final = 10_000
_KNOCK_AGAIN: Final = frozenset({400, 401, 403})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class ClientSettings:
    allow_private_addresses: bool = False
    user_agent: str = "fedi/0.1"
    connect_timeout: float = 5.0
    total_timeout: float = 15.0
    max_body_bytes: int = 1_048_576  # SECURITY 13: cap while streaming, not after
    # Fetches' connection pool (aiohttp). Deliveries go through fedi.activitypub.poster,
    # whose concurrency the delivery worker bounds, per host and in total.
    per_host_connections: int = 8
    total_connections: int = 256


@dataclass(frozen=True)
class PostResult:
    status: int
    retry_after: float | None  # seconds, from Retry-After (delta-seconds or HTTP-date)
    scheme_used: str  # "cavage" | "rfc9421"
    body_excerpt: str  # first <=200 chars of the response body, for logs


@dataclass(frozen=True)
class SignedAhead:
    """A request's signed headers for one knock (scheme and key), made before it is sent."""

    scheme: Scheme
    key: SigningKey
    headers: dict[str, str]


class _ConnectFailed(FetchError):
    """The TCP/TLS connection could not be established (as opposed to an HTTP answer)."""


ConnectFailed = _ConnectFailed  # public: the delivery worker pauses a host it cannot reach


class DestinationRefused(FetchError):
    """The address guard refused the destination (scheme, userinfo, a forbidden address, also
    when a name resolves to one): asking again will not help, so a delivery fails at once."""


def as_url(url: str | URL) -> URL:
    """Parse a URL and drop its fragment (vetting happens in `FederationClient._exchange`)."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError) as exc:
        raise FetchError(f"invalid URL {str(url)[:200]!r}: {exc}") from exc
    return parsed.with_fragment(None)


def same_url(a: URL, b: URL) -> bool:
    """Compare two absolute URLs ignoring fragments and an explicit default port."""

    def key(u: URL) -> tuple[str, str, int | None, str, str]:
        return (u.scheme, (u.host or "").lower(), u.port, u.raw_path or "/", u.raw_query_string)

    return key(a) == key(b)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value) if len(value) <= 10 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def read_capped(resp: aiohttp.ClientResponse, limit: int, *, truncate: bool = False) -> bytes:
    """Read at most `limit` (decompressed) bytes; FetchError beyond that unless `truncate`."""
    too_big = FetchError(f"response larger than {limit} bytes")
    if not truncate and resp.content_length is not None and resp.content_length > limit:
        raise too_big
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        buf += chunk
        if len(buf) > limit:
            if truncate:
                return bytes(buf[:limit])
            raise too_big
    return bytes(buf)


def _parse_json_object(body: bytes, url: URL) -> dict[str, Any]:
    try:
        return jsonsafe.loads_object(body, max_bytes=len(body))  # size is capped while reading
    except ValidationError as exc:
        raise FetchError(f"response from {url} refused: {exc.reason}") from None


def _excerpt(body: bytes) -> str:
    return body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]


def parse_handle(handle: str) -> tuple[str, str]:
    """Split "@name@host", "name@host" or "acct:name@host" into (name, host[:port])."""
    text = handle.strip()
    if text[:5].lower() == "acct:":
        text = text[5:]
    text = text.removeprefix("@")
    name, sep, host = text.partition("@")
    bad = set("@/?#\\ \t\r\n")
    if not sep or not name or not host or bad & set(name) or bad & set(host):
        raise FetchError(f"not a valid handle: {handle[:200]!r}")
    return name, host


VETTED_INBOXES: Final = 10_000  # inbox URLs remembered as vetted (all forgotten past it)


class FederationClient:
    """Outbound federation HTTP; one pooled aiohttp session, created lazily inside the loop."""

    def __init__(
        self, settings: ClientSettings,
        host_policy: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        """host_policy: refuses hosts (domain blocks) on every request, redirects included."""
        self._settings = settings
        self._host_policy = host_policy
        self._session: aiohttp.ClientSession | None = None
        self._poster = Poster(
            allow_private=settings.allow_private_addresses,
            connect_timeout=settings.connect_timeout, total_timeout=settings.total_timeout,
            body_cap=POST_BODY_CAP, user_agent=settings.user_agent,
        )
        self._schemes: OrderedDict[str, Scheme] = OrderedDict()
        # Hosts that refused an RFC 9421 `ed25519` signature: they get RSA from now on.
        self._no_ed25519: OrderedDict[str, None] = OrderedDict()
        self._inboxes: dict[str, tuple[URL, str]] = {}  # inbox URL -> vetted URL, Host

    async def close(self) -> None:
        await self._poster.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            s = self._settings
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(s.allow_private_addresses),
                limit=s.total_connections,
                limit_per_host=s.per_host_connections,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=s.total_timeout, sock_connect=s.connect_timeout
                ),
                headers={"User-Agent": s.user_agent},
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                trust_env=False,  # never route through an environment-configured proxy
            )
        return self._session

    # -- signature scheme memory (double knocking) -------------------------------------------

    def preferred_scheme(self, host: str) -> str:
        """The scheme that last worked for `host` (Host-header form, "h" or "h:port")."""
        return self._schemes.get(host.lower(), "cavage")

    def _refuses_ed25519(self, host: str) -> None:
        self._no_ed25519[host] = None
        self._no_ed25519.move_to_end(host)
        while len(self._no_ed25519) > MAX_REMEMBERED_HOSTS:
            self._no_ed25519.popitem(last=False)

    def _remember(self, host: str, scheme: Scheme) -> None:
        self._schemes[host] = scheme
        self._schemes.move_to_end(host)
        while len(self._schemes) > MAX_REMEMBERED_HOSTS:
            self._schemes.popitem(last=False)

    # -- transport ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _open(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes | None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, no redirects; transport failures become FetchError.

        Only `_exchange` calls this, with a URL that has passed `check_url`.
        """
        answered = False
        try:
            async with self._http().request(
                method, url, headers=CIMultiDict(headers), data=body, allow_redirects=False
            ) as resp:
                answered = True
                yield resp
        except FetchError as exc:
            if answered:
                raise
            # Before any answer, only GuardedResolver raises FetchError: a refused address.
            raise DestinationRefused(exc.reason) from None
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            raise _ConnectFailed(f"could not connect to {host_key(url)}: {exc}") from exc
        except TimeoutError as exc:
            raise FetchError(f"timed out talking to {host_key(url)}") from exc
        except aiohttp.ClientError as exc:
            raise FetchError(f"request to {host_key(url)} failed: {exc!r}") from exc

    @asynccontextmanager
    async def _exchange(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes | None,
        sign_as: SigningKey | None,
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, Scheme | None]]:
        """Send one request (two when knocking again), signed when `sign_as` is given.

        The chokepoint every outbound request goes through: the URL is vetted here, before
        anything is signed or sent (scheme, userinfo, IP-literal hosts; names are vetted by
        the resolver at connect time).
        """
        url = check_url(url, self._settings.allow_private_addresses)
        # Fetches can be led elsewhere (redirects, refetch from id); deliveries cannot, and the
        # delivery worker decides each row itself (refused rows are dropped, not retried).
        if self._host_policy is not None and method != "POST":
            refusal = await self._host_policy(host_key(url))
            if refusal is not None:
                raise FetchError(f"refusing to contact {host_key(url)}: {refusal}")
        if sign_as is None:
            async with self._open(method, url, headers, body) as resp:
                yield resp, None
            return
        host = host_key(url)
        for index, (scheme, key) in enumerate(self._knocks(host, sign_as)):
            signed = CIMultiDict(headers)
            signed.update(sign_request(scheme, method, str(url), headers, body, key))
            async with self._open(method, url, signed, body) as resp:
                if self._final(host, scheme, key, resp.status, index):
                    yield resp, scheme
                    return
                await read_capped(resp, POST_BODY_CAP, truncate=True)  # lets the pool reuse it
        raise AssertionError("unreachable")  # pragma: no cover

    def _knocks(self, host: str, sign_as: SigningKey) -> list[tuple[Scheme, SigningKey]]:
        """The signatures to try on `host`, in order (double knocking)."""
        if sign_as.ed25519 is not None and host not in self._no_ed25519:
            # A key with an Ed25519 companion is for a peer that should verify RFC 9421
            # `ed25519`: knock with that, then with RSA draft-cavage, which everyone takes.
            return [("rfc9421", sign_as), ("cavage", replace(sign_as, ed25519=None))]
        rsa = sign_as if sign_as.ed25519 is None else replace(sign_as, ed25519=None)
        first: Scheme = "rfc9421" if self.preferred_scheme(host) == "rfc9421" else "cavage"
        return [(first, rsa), ("rfc9421" if first == "cavage" else "cavage", rsa)]

    def _final(
        self, host: str, scheme: Scheme, key: SigningKey, status: int, index: int
    ) -> bool:
        """Whether the answer `status` to knock `index` is the answer, learning from it."""
        if status not in _KNOCK_AGAIN or index == 1:
            # What works with RSA is remembered; an Ed25519 answer says nothing of it.
            if not 400 <= status < 500 and key.ed25519 is None:
                self._remember(host, scheme)
            return True
        if key.ed25519 is not None:
            self._refuses_ed25519(host)
        return False

    async def _get_json(
        self,
        url: URL,
        *,
        accept: str,
        sign_as: SigningKey | None,
        max_redirects: int,
        content_type_ok: Callable[[str], bool] | None,
    ) -> tuple[URL, dict[str, Any]]:
        """GET a JSON object, following at most `max_redirects` redirects by hand."""
        redirects = 0
        while True:
            url = as_url(url)
            async with self._exchange("GET", url, {"Accept": accept}, None, sign_as) as (resp, _):
                if resp.status in _REDIRECTS and "Location" in resp.headers:
                    if redirects >= max_redirects:
                        raise FetchError(f"refusing to follow redirect {resp.status} from {url}")
                    try:
                        url = url.join(URL(resp.headers["Location"]))
                    except ValueError as exc:
                        raise FetchError(f"bad redirect location from {url}") from exc
                    redirects += 1
                    continue
                if not 200 <= resp.status < 300:
                    raise FetchError(
                        f"fetching {url} failed with HTTP status {resp.status}", resp.status
                    )
                ctype = resp.headers.get("Content-Type", "")
                if content_type_ok is not None and not content_type_ok(ctype):
                    raise FetchError(f"{url} is not served as ActivityPub: {ctype[:100]!r}")
                body = await read_capped(resp, self._settings.max_body_bytes)
            return url, _parse_json_object(body, url)

    # -- public API ---------------------------------------------------------------------------

    async def fetch_json(
        self,
        url: str,
        *,
        accept: str,
        sign_as: SigningKey | None = None,
        allow_redirects: int = 0,
    ) -> tuple[str, dict[str, Any]]:
        """GET a JSON object (WebFinger, NodeInfo); returns (final URL, object)."""
        final, doc = await self._get_json(
            as_url(url),
            accept=accept,
            sign_as=sign_as,
            max_redirects=allow_redirects,
            content_type_ok=None,
        )
        return str(final), doc

    async def fetch_object(self, url: str, *, sign_as: SigningKey | None) -> dict[str, Any]:
        """Fetch an ActivityPub object whose `id` is the URL it was served from.

        A keyId such as ``https://h/users/a#main-key`` is fetched as ``https://h/users/a``.
        One redirect is followed (all checks re-run). If the document claims another id, it is
        refetched once from that id and must match there; otherwise FetchError.
        """
        requested = as_url(url)
        final, doc = await self._get_json(
            requested,
            accept=ACCEPT_AP,
            sign_as=sign_as,
            max_redirects=1,
            content_type_ok=is_activitypub_media_type,
        )
        doc_id = doc.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            raise FetchError(f"document fetched from {final} has no id")
        claimed = self._parse_id(doc_id)
        if claimed is not None and same_url(claimed, final) and not claimed.raw_fragment:
            return doc
        if claimed is None or claimed.raw_fragment:
            raise self._mismatch(doc_id, final)
        # The document claims to live elsewhere: believe it only if that origin serves it.
        refetched_url, refetched = await self._get_json(
            claimed,
            accept=ACCEPT_AP,
            sign_as=sign_as,
            max_redirects=0,
            content_type_ok=is_activitypub_media_type,
        )
        refetched_id = refetched.get("id")
        if not isinstance(refetched_id, str) or not self._same_id(refetched_id, refetched_url):
            raise self._mismatch(str(refetched_id)[:200], refetched_url)
        return refetched

    @staticmethod
    def _parse_id(doc_id: str) -> URL | None:
        try:
            parsed = URL(doc_id)
        except ValueError:
            return None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            return None
        return parsed

    def _same_id(self, doc_id: str, url: URL) -> bool:
        parsed = self._parse_id(doc_id)
        return parsed is not None and not parsed.raw_fragment and same_url(parsed, url)

    @staticmethod
    def _mismatch(doc_id: str, url: URL) -> FetchError:
        return FetchError(
            f"document id {doc_id[:200]} does not match the URL it was fetched from {url}"
        )

    async def webfinger(self, handle: str) -> str:
        """Resolve a handle to its actor id URL via WebFinger (no redirects at all).

        https only; with `allow_private_addresses` a connection failure (not an HTTP status)
        falls back to plain http, for local development and tests on loopback.
        """
        name, host = parse_handle(handle)
        resource = f"acct:{name}@{host}"
        allow_private = self._settings.allow_private_addresses
        schemes = ("https", "http") if allow_private else ("https",)
        jrd: dict[str, Any] = {}
        for scheme in schemes:
            base = as_url(f"{scheme}://{host}")
            if base.raw_path not in ("", "/") or base.raw_query_string or not base.host:
                raise FetchError(f"not a valid handle: {handle[:200]!r}")
            url = base.with_path("/.well-known/webfinger").with_query(resource=resource)
            try:
                _, jrd = await self._get_json(
                    url, accept=ACCEPT_JRD, sign_as=None, max_redirects=0, content_type_ok=None
                )
                break
            except _ConnectFailed:
                if scheme == schemes[-1]:
                    raise
        links = jrd.get("links")
        for link in links if isinstance(links, list) else []:
            if not isinstance(link, dict) or link.get("rel") != "self":
                continue
            href, ltype = link.get("href"), link.get("type")
            if not isinstance(href, str) or not isinstance(ltype, str):
                continue
            parsed = self._parse_id(href)
            if is_activitypub_media_type(ltype) and parsed is not None and not parsed.raw_user:
                return href
        raise FetchError(f"WebFinger for {resource} has no ActivityPub self link")

    def signed_ahead(
        self, inbox_url: str, body: bytes, *, sign_as: SigningKey
    ) -> SignedAhead | None:
        """The first knock's signed headers for `post_activity`, made now: a fan-out signs a
        wave of requests back to back (RSA's code and tables stay in the CPU's caches), then
        sends them. None when the inbox is refused (`post_activity` then says why)."""
        try:
            url, headers = self._inbox(inbox_url)
        except DestinationRefused:
            return None
        scheme, key = self._knocks(headers["Host"], sign_as)[0]
        return SignedAhead(scheme, key, sign_request(scheme, "POST", str(url), headers, body, key))

    def _inbox(self, inbox_url: str) -> tuple[URL, dict[str, str]]:
        """The inbox's URL, vetted by the address guard, and the headers every POST to it has.

        The vetting depends on the URL alone, and costs 23 µs, twice per delivery (signing,
        sending): a vetted inbox is remembered. Refusals are not (rare, and of any length)."""
        vetted = self._inboxes.get(inbox_url)
        if vetted is None:
            try:
                url = check_url(as_url(inbox_url), self._settings.allow_private_addresses)
            except FetchError as exc:
                raise DestinationRefused(exc.reason) from None
            vetted = (url, host_key(url))  # as url_authority
            if len(self._inboxes) >= VETTED_INBOXES:
                self._inboxes.clear()
            self._inboxes[inbox_url] = vetted
        url, host = vetted
        return url, {"Content-Type": ACTIVITY_JSON, "Host": host}

    async def post_activity(
        self, inbox_url: str, body: bytes, *, sign_as: SigningKey,
        ahead: SignedAhead | None = None,
    ) -> PostResult:
        """POST a signed activity; HTTP error statuses are returned, not raised.

        `ahead`: the first knock signed by `signed_ahead`, used if it is still the first knock.
        DestinationRefused when the address guard refuses the inbox (final for a delivery).
        """
        url, headers = self._inbox(inbox_url)
        host = headers["Host"]
        for index, (scheme, key) in enumerate(self._knocks(host, sign_as)):
            if index == 0 and ahead is not None and (ahead.scheme, ahead.key) == (scheme, key):
                signed = ahead.headers
            else:
                signed = sign_request(scheme, "POST", str(url), headers, body, key)
            try:
                answer = await self._poster.post(url, signed, body)
            except RefusedAddress as exc:
                raise DestinationRefused(exc.reason) from None
            except ConnectError as exc:
                raise _ConnectFailed(exc.reason) from None
            except TimeoutError:
                raise FetchError(f"timed out talking to {host}") from None
            if self._final(host, scheme, key, answer.status, index):
                return PostResult(
                    status=answer.status,
                    retry_after=parse_retry_after(answer.headers.get("retry-after")),
                    scheme_used=scheme,
                    body_excerpt=_excerpt(answer.body),
                )
        raise AssertionError("unreachable")  # pragma: no cover
