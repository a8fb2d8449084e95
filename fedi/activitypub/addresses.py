"""One spelling per IP address (SECURITY 22), shared by domain policy and the SSRF guard.

A host can name the same IPv4 address many ways: `127.0.0.22`, `2130706454`, `0x7f000016`,
`127.22` (inet_aton forms, which resolvers and browsers accept), `[::ffff:127.0.0.22]`,
`[::ffff:7f00:16]` (IPv4-mapped), `[::127.0.0.22]` (IPv4-compatible), and NAT64 or 6to4
addresses that carry it. Every decision about a host first reduces it to one form here.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final

import idna

from fedi.errors import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_SIXTOFOUR: Final = ipaddress.IPv6Network("2002::/16")

# A label that makes a host an IPv4 address to the WHATWG URL parser and to inet_aton.
_NUMBER: Final = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_LABEL: Final = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_MAX_DOMAIN: Final = 253


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried inside an IPv4-mapped/compatible, NAT64 or 6to4 address."""
    if ip in _MAPPED or ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIXTOFOUR:
        return ip.sixtofour
    return None


def _number(label: str) -> int:
    if label[:2].lower() == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)
    return int(label)


def _ipv4_forms(host: str) -> ipaddress.IPv4Address | None:
    """`host` read as an IPv4 address the way URL parsers do; None if it is a name.

    Raises ValueError for a host that looks numeric but is no address (`1.2.3.4.5`, `999`…),
    which parsers refuse too."""
    labels = host.split(".")
    if labels and labels[-1] == "":
        labels.pop()  # one trailing dot
    if not labels or not _NUMBER.match(labels[-1]):
        return None
    if len(labels) > 4 or not all(_NUMBER.match(label) for label in labels):
        raise ValueError(f"{host!r} is neither a name nor an IPv4 address")
    try:
        numbers = [_number(label) for label in labels]
    except ValueError:
        raise ValueError(f"{host!r} is neither a name nor an IPv4 address") from None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{host!r} is out of the IPv4 range")
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_ip(host: str) -> IPAddress | None:
    """The address a host names, in any spelling; None when it is a name, not an address.

    IPv6 literals may come with or without brackets; an IPv6 form of an IPv4 address comes
    back as that IPv4 address. Raises ValueError for a malformed numeric host."""
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        ip6 = ipaddress.IPv6Address(text.split("%", 1)[0])  # ValueError when malformed
        return embedded_ipv4(ip6) or ip6
    return _ipv4_forms(text)


def canonical_ip(host: str) -> str | None:
    """The one spelling of an IP-address host (`1.2.3.4`, `[2001:db8::1]`), or None for a
    name. Raises ValueError for a malformed numeric host."""
    ip = parse_ip(host)
    if ip is None:
        return None
    return str(ip) if ip.version == 4 else f"[{ip.compressed}]"


def split_host(domain: str) -> tuple[str, int | None]:
    """`host[:port]` → (host, port). IPv6 literals keep their brackets."""
    if domain.startswith("["):
        end = domain.find("]")
        if end < 0:
            raise ValidationError(f"{domain!r} is not a valid domain: unclosed '['")
        host, rest = domain[: end + 1], domain[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValidationError(f"{domain!r} is not a valid domain")
        return host, _port(domain, rest[1:])
    host, sep, port = domain.rpartition(":")
    if not sep:
        return domain, None
    return host, _port(domain, port)


def _port(domain: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValidationError(f"{domain!r} is not a valid domain: bad port {raw!r}")
    return int(raw)


def normalise_domain(raw: str) -> str:
    """The policy key for a domain as typed or seen: IDNA, lower case, no trailing dot.

    Accepts `host` or `host:port` (an IPv6 literal in brackets); raises ValidationError saying
    what is wrong otherwise.
    """
    text = raw.strip()
    if not text:
        raise ValidationError("the domain is empty")
    if "/" in text:
        raise ValidationError(
            f"{raw!r} is not a domain: give the host only (example.com), not a URL"
        )
    host, port = split_host(text)
    host = _normalise_host(host, raw)
    return host if port is None else f"{host}:{port}"


def _normalise_host(host: str, raw: str) -> str:
    # IP addresses first, in every spelling (SECURITY 22): `[::ffff:127.0.0.22]`, `2130706454`
    # and `0x7f.22` are all `127.0.0.22`, so a block on one covers the others.
    try:
        address = canonical_ip(host)
    except ValueError:
        kind = "IPv6" if host.startswith("[") else "IPv4"
        raise ValidationError(f"{raw!r} is not a valid domain: bad {kind} address") from None
    if address is not None:
        return address
    if host.startswith("["):
        raise ValidationError(f"{raw!r} is not a valid domain: bad IPv6 address")
    host = host.rstrip(".")
    if not host:
        raise ValidationError(f"{raw!r} is not a valid domain")
    if host.isascii():
        encoded = host.lower()
    else:
        try:
            encoded = idna.encode(host, uts46=True).decode("ascii").lower()
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValidationError(f"{raw!r} is not a valid domain: {exc}") from None
    if len(encoded) > _MAX_DOMAIN or not all(_LABEL.fullmatch(x) for x in encoded.split(".")):
        raise ValidationError(
            f"{raw!r} is not a valid domain: use letters, digits and '-' in dot-separated labels"
        )
    return encoded


# Every inbox request asks this for the same few hosts (host_of, domain policy), and the IP
# forms and IDNA cost more than the rest of accepting the request but its signature check.
@functools.lru_cache(maxsize=2048)
def normalise_or_none(raw: str) -> str | None:
    """Like normalise_domain, for hosts seen on the wire: None when it is not a domain."""
    try:
        return normalise_domain(raw)
    except ValidationError:
        return None
