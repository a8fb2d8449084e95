"""Domain policy decisions, pure: normalise a domain, find the rule that covers it, decide.

Normalisation (SECURITY 12, 22; fedi.activitypub.addresses): IDNA (UTS #46, as the HTTP
client encodes hosts), lower case, no trailing dot, one spelling per IP address
(`[::ffff:127.0.0.22]`, `2130706454` and `127.0.0.22` are one host). It runs on both sides of
every comparison: on what the admin typed and on every host we see, so `Bücher.Example.` and
`xn--bcher-kva.example` are the same domain.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

# Normalisation lives with the address parsing it relies on; re-exported here for policy code.
from fedi.activitypub.addresses import normalise_domain as normalise_domain
from fedi.activitypub.addresses import normalise_or_none as normalise_or_none
from fedi.activitypub.addresses import split_host as split_host

Severity = Literal["suspend", "silence", "noop"]
SEVERITIES: tuple[Severity, ...] = ("suspend", "silence", "noop")
Mode = Literal["blocklist", "allowlist"]
MODES: tuple[Mode, ...] = ("blocklist", "allowlist")
DecisionKind = Literal["allow", "suspend", "silence", "refused_by_allowlist"]


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
