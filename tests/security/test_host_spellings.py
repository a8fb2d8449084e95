"""The pure rules under items 3 and 4: one spelling per host, http(s)-only links."""

from __future__ import annotations

import pytest

from fedi.activitypub.netguard import forbidden_kind
from fedi.activitypub.parse import host_of, is_http_url, scrub_links
from fedi.errors import ValidationError
from fedi.privacy.domains import normalise_domain


@pytest.mark.parametrize(
    "spelling",
    ["127.0.0.22", "[::ffff:127.0.0.22]", "[::FFFF:7f00:16]", "[0:0:0:0:0:ffff:7f00:16]",
     "[::127.0.0.22]", "[64:ff9b::7f00:16]", "2130706454", "0x7f000016", "0x7F.0.0.0x16",
     "0177.0.0.026", "127.22", "127.0.22", "127.0.0.22."],
)
def test_every_spelling_of_an_address_is_one_policy_key(spelling: str) -> None:
    assert normalise_domain(spelling) == "127.0.0.22"
    assert normalise_domain(f"{spelling}:8000") == "127.0.0.22:8000"
    assert host_of(f"http://{spelling}:8000/users/x") == "127.0.0.22:8000"


@pytest.mark.parametrize("bad", ["1.2.3.4.5", "256.0.0.1", "0x100000000", "09.1.1.1", "[::g]"])
def test_numeric_hosts_that_are_no_address_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="not a valid domain"):
        normalise_domain(bad)


def test_ipv6_stays_ipv6_and_names_stay_names() -> None:
    assert normalise_domain("[2001:DB8:0::1]") == "[2001:db8::1]"
    assert normalise_domain("a1.example") == "a1.example"
    assert forbidden_kind(__import__("ipaddress").ip_address("::ffff:7f00:16")) == "loopback"


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "javascript://example.com/%0aalert(1)",
     "data:text/html,x", "file:///etc/passwd", "//example.com/x", "/users/x", "example.com/x",
     " https://example.com/", "https://exa mple.com/", "java\tscript:alert(1)",
     "https://user@example.com/", "http://", "https://example.com:99999/", "ftp://example.com/",
     "https:\\\\example.com\\x", "https://example.com/\x7f", "https://example.com/\x00x",
     "https://example.com/a\nb", "https://example.com/\x1f", 42, None],
)
def test_only_http_urls_with_a_host_pass(url: object) -> None:
    assert not is_http_url(url)


def test_http_urls_pass_and_scrubbing_keeps_them() -> None:
    assert is_http_url("https://example.com/users/a?x=1#y")
    assert is_http_url("http://[::1]:8000/x")
    assert is_http_url("https://example.com/caf\u00e9/\u3000")  # not controls: kept
    doc = {"id": "https://a.example/n/1", "url": ["javascript:x", "https://a.example/@a/1"],
           "tag": [{"type": "Mention", "href": "data:x", "name": "@b"}],
           "to": ["as:Public"], "content": "javascript: is just text here"}
    clean = scrub_links(doc)
    assert clean["url"] == ["https://a.example/@a/1"]
    assert clean["tag"] == [{"type": "Mention", "name": "@b"}]
    assert clean["to"] == ["as:Public"] and clean["content"] == doc["content"]
    assert host_of("javascript://a.example/x") == ""
