"""Domain policy decisions, pure: normalise a domain, find the rule that covers it, decide.

Normalisation (SECURITY 12): IDNA (UTS #46, as the HTTP client encodes hosts), lower case,
no trailing dot. It runs on both sides of every comparison: on what the admin typed and on
every host we see, so `Bücher.Example.` and `xn--bcher-kva.example` are the same domain.

Ports. A policy key is `host` or `host:port`:
- a bare host (`example.com`) covers that host on every port and all its subdomains
  (`a.example.com`, `example.com:8443`);
- `host:port` (`127.0.0.1:8001`) covers only that port, on that host and its subdomains.
  Instances that share an address but not a port (as in development) are told apart this way.

When several rules cover a domain the most specific wins (longest host, then a rule with a
port over one without), as in Mastodon: a `noop` on `sub.example.com` is an exception to a
suspension of `example.com`. Expired rules cover nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import idna

from fedi.errors import ValidationError

Severity = Literal["suspend", "silence", "noop"]
SEVERITIES: tuple[Severity, ...] = ("suspend", "silence", "noop")
Mode = Literal["blocklist", "allowlist"]
MODES: tuple[Mode, ...] = ("blocklist", "allowlist")
DecisionKind = Literal["allow", "suspend", "silence", "refused_by_allowlist"]

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_MAX_DOMAIN = 253


@dataclass(frozen=True)
class Rule:
    """One domain block as the decision needs it."""

    domain: str  # normalised policy key
    severity: Severity
    reject_media: bool = False
    reject_reports: bool = False
    public_comment: str | None = None
    expires_at: float | None = None

    def active(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class Decision:
    kind: DecisionKind
    reject_media: bool = False
    reject_reports: bool = False
    reason: str | None = None  # public reason, for refusals and listings
    rule: str | None = None  # the policy key that decided, if any

    @property
    def refused(self) -> bool:
        """No traffic at all: nothing in, nothing out, no fetches."""
        return self.kind in ("suspend", "refused_by_allowlist")


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
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise ValidationError(f"{raw!r} is not a valid domain: bad IPv6 address") from None
    host = host.rstrip(".")
    if not host:
        raise ValidationError(f"{raw!r} is not a valid domain")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
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


def normalise_or_none(raw: str) -> str | None:
    """Like normalise_domain, for hosts seen on the wire: None when it is not a domain."""
    try:
        return normalise_domain(raw)
    except ValidationError:
        return None


def candidates(domain: str) -> list[str]:
    """Policy keys that could cover a normalised domain, most specific first."""
    host, port = split_host(domain)
    if host.startswith("[") or _is_ipv4(host):
        suffixes = [host]
    else:
        labels = host.split(".")
        suffixes = [".".join(labels[i:]) for i in range(len(labels))]
    keys: list[str] = []
    for suffix in suffixes:
        if port is not None:
            keys.append(f"{suffix}:{port}")
        keys.append(suffix)
    return keys


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def covers(key: str, domain: str) -> bool:
    """Whether the policy key `key` covers the normalised `domain`."""
    return key in candidates(domain)


def find_rule(domain: str, rules: Mapping[str, Rule], now: float) -> Rule | None:
    """The most specific active rule covering `domain` (both normalised)."""
    for key in candidates(domain):
        rule = rules.get(key)
        if rule is not None and rule.active(now):
            return rule
    return None


def is_allowed(domain: str, allows: Iterable[str] | Mapping[str, object]) -> bool:
    listed = allows if isinstance(allows, Mapping) else set(allows)
    return any(key in listed for key in candidates(domain))


def decide(
    domain: str,
    blocks: Mapping[str, Rule],
    allows: Iterable[str] | Mapping[str, object],
    mode: Mode,
    now: float,
) -> Decision:
    """What the instance does with `domain` (normalised). In allowlist mode an unlisted domain
    is refused; a listed one is still subject to the blocks."""
    if mode == "allowlist" and not is_allowed(domain, allows):
        return Decision(
            "refused_by_allowlist",
            reason=f"{domain} is not on this instance's list of federated domains",
        )
    rule = find_rule(domain, blocks, now)
    if rule is None:
        return Decision("allow")
    kind: DecisionKind = "allow" if rule.severity == "noop" else rule.severity
    reason = None
    if kind == "suspend":
        reason = f"{domain} is suspended by this instance"
    elif kind == "silence":
        reason = f"{domain} is silenced by this instance"
    if reason and rule.public_comment:
        reason = f"{reason}: {rule.public_comment}"
    return Decision(kind, rule.reject_media, rule.reject_reports, reason, rule.domain)
