"""Outbound address guard against server-side request forgery (SECURITY item 10).

Every outbound federation request goes through two checks:

* `check_url` before the request: only http/https, no userinfo, and a host that is an IP
  literal is classified here, because aiohttp does not consult the resolver for IP literals.
* `GuardedResolver` at connect time: aiohttp connects to exactly the addresses the resolver
  returns, so refusing when *any* resolved address is forbidden leaves no DNS-rebinding gap
  between "checked" and "connected".
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from fedi.activitypub.addresses import embedded_ipv4
from fedi.errors import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# (network, kind). Order matters only for the reason text.
_IPV4_RANGES: Final[tuple[tuple[_V4, str], ...]] = (
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("192.0.0.0/24"), "reserved"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

_IPV6_RANGES: Final[tuple[tuple[_V6, str], ...]] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("fc00::/7"), "private"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
    (_V6("2001::/32"), "Teredo"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("100::/64"), "discard-only"),
)

# Refused even when private addresses are allowed for local development.
ALWAYS_FORBIDDEN_KINDS: Final = frozenset({"multicast", "unspecified", "broadcast"})

_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


def forbidden_kind(ip: IPAddress) -> str | None:
    """Why `ip` must not be contacted (e.g. "loopback"), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(int(ip))  # drop the zone id
        embedded = embedded_ipv4(ip)  # one reading of IPv4-in-IPv6, shared with policy
        if embedded is not None:
            return forbidden_kind(embedded)
        for net6, kind in _IPV6_RANGES:
            if ip in net6:
                return kind
    else:
        for net4, kind in _IPV4_RANGES:
            if ip in net4:
                return kind
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or not ip.is_global:
        return "non-global"
    return None


def is_forbidden_address(ip: IPAddress) -> bool:
    """True for every address a federation request must not reach (SECURITY item 10)."""
    return forbidden_kind(ip) is not None


def check_address(ip: IPAddress, allow_private: bool) -> None:
    """Raise FetchError if `ip` must not be contacted.

    `allow_private` (local development and tests) permits everything `is_forbidden_address`
    flags except multicast, unspecified and broadcast addresses.
    """
    kind = forbidden_kind(ip)
    if kind is None or (allow_private and kind not in ALWAYS_FORBIDDEN_KINDS):
        return
    detail = "" if kind == "private" else f" ({kind})"
    raise FetchError(f"refusing to connect to private address {ip}{detail}")


def check_url(url: str | URL, allow_private: bool) -> URL:
    """Parse and vet an outbound URL; returns it without its fragment.

    Refuses non-http(s) schemes, userinfo, missing hosts, non-canonical numeric hosts
    (e.g. ``2130706433`` or ``127.1``) and forbidden IP-literal hosts.
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError) as exc:
        raise FetchError(f"invalid URL {str(url)[:200]!r}: {exc}") from exc
    shown = str(parsed)[:200]
    if parsed.scheme not in ("http", "https"):
        raise FetchError(f"refusing non-http(s) URL {shown}")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise FetchError(f"refusing URL with userinfo {shown}")
    host = parsed.host
    if not host:
        raise FetchError(f"URL has no host: {shown}")
    try:
        ip: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        check_address(ip, allow_private)
    elif _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
        raise FetchError(f"refusing non-canonical numeric host {host!r}")
    return parsed.with_fragment(None)


def check_resolved(host: str, addresses: list[str], allow_private: bool) -> None:
    """Refuse a name unless every address it resolved to may be connected to (SECURITY 10).

    All of them, so a name cannot mix a public and a private address and have the connection
    fall through to the private one.
    """
    if not addresses:
        raise FetchError(f"{host} did not resolve to any address")
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError as exc:
            raise FetchError(f"{host} resolved to an unparsable address") from exc
        try:
            check_address(ip, allow_private)
        except FetchError as exc:
            raise FetchError(f"{exc.reason} (resolved from {host})") from None


class GuardedResolver(AbstractResolver):
    """Resolve with the default (threaded getaddrinfo) resolver, then refuse forbidden results.

    Refuses the whole name if any address is forbidden, so a name cannot mix a public and a
    private address and have the connector fall through to the private one.
    """

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()  # needs the running loop, hence created lazily
        results = await self._inner.resolve(host, port, family)
        check_resolved(host, [result["host"] for result in results], self._allow_private)
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
