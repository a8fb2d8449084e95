"""Domain normalisation and the policy decision (SECURITY 12), as pure functions."""

from __future__ import annotations

import pytest

from fedi.errors import ValidationError
from fedi.privacy.domains import Rule, covers, decide, find_rule, normalise_domain

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Bücher.Example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("EXAMPLE.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  example.com  ", "example.com"),
        ("Example.COM.:8443", "example.com:8443"),
        ("127.0.0.1:8001", "127.0.0.1:8001"),
        ("[::1]:8080", "[::1]:8080"),
        ("[0:0::1]", "[::1]"),
        ("faß.de", "xn--fa-hia.de"),  # as the HTTP client encodes it (UTS #46)
    ],
)
def test_domains_are_normalised(raw: str, expected: str) -> None:
    assert normalise_domain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("*.example.com", "not a valid domain"),
        ("exa mple.com", "not a valid domain"),
        ("a..b", "not a valid domain"),
        ("-a.example", "not a valid domain"),
        ("https://example.com/", "not a URL"),
        ("example.com:99999", "bad port"),
        ("user@example.com", "not a valid domain"),
        (".", "not a valid domain"),
    ],
)
def test_bad_domains_are_refused_with_a_reason(raw: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        normalise_domain(raw)


def test_a_block_covers_subdomains_and_every_port() -> None:
    assert covers("example.com", "example.com")
    assert covers("example.com", "a.example.com")
    assert covers("example.com", "deep.a.example.com")
    assert covers("example.com", "example.com:8443")
    assert covers("example.com", "a.example.com:8443")
    assert not covers("example.com", "notexample.com")
    assert not covers("example.com", "example.com.evil.net")
    assert not covers("a.example.com", "example.com")


def test_a_block_with_a_port_covers_only_that_port() -> None:
    assert covers("127.0.0.1:8001", "127.0.0.1:8001")
    assert not covers("127.0.0.1:8001", "127.0.0.1:8002")
    assert not covers("127.0.0.1:8001", "127.0.0.1")
    assert covers("127.0.0.1", "127.0.0.1:8002")
    # An IP address has no subdomains: 1.0.0.1 is not "under" 0.0.1.
    assert not covers("0.0.1", "1.0.0.1")


def test_idn_block_matches_punycode_on_the_wire() -> None:
    blocks = {normalise_domain("Bücher.Example."): Rule("xn--bcher-kva.example", "suspend")}
    seen = normalise_domain("WWW.xn--BCHER-kva.example.")
    assert decide(seen, blocks, (), "blocklist", NOW).kind == "suspend"


def test_suspend_silence_and_noop() -> None:
    blocks = {
        "bad.example": Rule("bad.example", "suspend", public_comment="spam"),
        "loud.example": Rule("loud.example", "silence", reject_media=True),
        "odd.example": Rule("odd.example", "noop", reject_reports=True),
    }
    suspended = decide("x.bad.example", blocks, (), "blocklist", NOW)
    assert suspended.kind == "suspend" and suspended.refused
    assert suspended.reason is not None and "spam" in suspended.reason
    silenced = decide("loud.example", blocks, (), "blocklist", NOW)
    assert silenced.kind == "silence" and not silenced.refused and silenced.reject_media
    odd = decide("odd.example", blocks, (), "blocklist", NOW)
    assert odd.kind == "allow" and odd.reject_reports
    assert decide("fine.example", blocks, (), "blocklist", NOW).kind == "allow"


def test_the_most_specific_rule_wins() -> None:
    blocks = {
        "example.com": Rule("example.com", "suspend"),
        "ok.example.com": Rule("ok.example.com", "noop"),
        "example.com:8443": Rule("example.com:8443", "silence"),
    }
    assert decide("ok.example.com", blocks, (), "blocklist", NOW).kind == "allow"
    assert decide("a.ok.example.com", blocks, (), "blocklist", NOW).kind == "allow"
    assert decide("other.example.com", blocks, (), "blocklist", NOW).kind == "suspend"
    assert decide("example.com:8443", blocks, (), "blocklist", NOW).kind == "silence"
    assert decide("a.example.com:8443", blocks, (), "blocklist", NOW).kind == "silence"


def test_expired_blocks_cover_nothing() -> None:
    blocks = {"example.com": Rule("example.com", "suspend", expires_at=NOW - 1)}
    assert find_rule("example.com", blocks, NOW) is None
    assert decide("example.com", blocks, (), "blocklist", NOW).kind == "allow"
    blocks = {"example.com": Rule("example.com", "suspend", expires_at=NOW + 1)}
    assert decide("example.com", blocks, (), "blocklist", NOW).kind == "suspend"


def test_allowlist_mode_refuses_unlisted_domains() -> None:
    allows = {"friends.example", "127.0.0.1:8001"}
    blocks = {"bad.friends.example": Rule("bad.friends.example", "suspend")}
    assert decide("friends.example", blocks, allows, "allowlist", NOW).kind == "allow"
    assert decide("a.friends.example", blocks, allows, "allowlist", NOW).kind == "allow"
    assert decide("127.0.0.1:8001", blocks, allows, "allowlist", NOW).kind == "allow"
    refused = decide("127.0.0.1:8002", blocks, allows, "allowlist", NOW)
    assert refused.kind == "refused_by_allowlist" and refused.refused
    assert decide("stranger.example", blocks, allows, "allowlist", NOW).refused
    # Blocks still apply inside the allowlist.
    assert decide("bad.friends.example", blocks, allows, "allowlist", NOW).kind == "suspend"
    # In blocklist mode the allowlist does not matter.
    assert decide("stranger.example", blocks, allows, "blocklist", NOW).kind == "allow"
