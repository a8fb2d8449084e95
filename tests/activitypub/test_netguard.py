"""SSRF guard (SECURITY item 10). Addresses are only classified here, never contacted."""

from __future__ import annotations

import ipaddress
import re
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from fedi.activitypub.netguard import (
    GuardedResolver,
    check_address,
    check_url,
    forbidden_kind,
    is_forbidden_address,
)
from fedi.errors import FetchError

FORBIDDEN = [
    "127.0.0.1",
    "127.255.0.9",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "2002:7f00:1::",  # 6to4 around 127.0.0.1
    "2002:a00:1::",  # 6to4 around 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64
    "2001::1",  # Teredo
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
]

ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "172.32.0.1",  # just outside 172.16/12
    "100.128.0.1",  # just outside 100.64/10
    "2606:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:93.184.216.34",
    "2002:5db8:d822::",  # 6to4 around a public address
    "64:ff9b::5db8:d822",  # NAT64 around a public address
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_addresses(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert is_forbidden_address(ip)
    with pytest.raises(FetchError, match="refusing to connect to private address"):
        check_address(ip, allow_private=False)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not is_forbidden_address(ip)
    check_address(ip, allow_private=False)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("100.64.0.1", "carrier-grade NAT"),
        ("2001::1", "Teredo"),
        ("169.254.169.254", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private"),
        ("2002:c0a8:101::1", "private"),  # 6to4 around 192.168.1.1
        ("192.0.2.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("fe80::1%eth0", "link-local"),
        ("::", "unspecified"),
        ("255.255.255.255", "broadcast"),
    ],
)
def test_forbidden_kind_names_the_range(address: str, kind: str) -> None:
    assert forbidden_kind(ipaddress.ip_address(address)) == kind


def test_reason_names_the_address() -> None:
    with pytest.raises(FetchError) as info:
        check_address(ipaddress.ip_address("10.0.0.1"), allow_private=False)
    assert info.value.reason == "refusing to connect to private address 10.0.0.1"


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.1", "192.168.1.1", "169.254.1.1", "::1", "fc00::1"]
)
def test_allow_private_permits_local_ranges(address: str) -> None:
    check_address(ipaddress.ip_address(address), allow_private=True)


@pytest.mark.parametrize(
    "address", ["224.0.0.1", "0.0.0.0", "255.255.255.255", "::", "ff02::1", "::ffff:0.0.0.0"]
)
def test_allow_private_still_refuses_multicast_unspecified_broadcast(address: str) -> None:
    with pytest.raises(FetchError):
        check_address(ipaddress.ip_address(address), allow_private=True)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/actor", "non-http(s)"),
        ("file:///etc/passwd", "non-http(s)"),
        ("gopher://example.com/", "non-http(s)"),
        ("http://user:pw@example.com/actor", "userinfo"),
        ("https://user@example.com/actor", "userinfo"),
        ("http://10.0.0.1/actor", "private address 10.0.0.1"),
        ("http://[::1]:8080/actor", "private address ::1"),
        ("http://[::ffff:7f00:1]/actor", "(loopback)"),
        ("http://169.254.169.254/latest/meta-data/", "private address 169.254.169.254"),
        ("http://2130706433/", "non-canonical numeric host"),
        ("http://127.1/", "non-canonical numeric host"),
        ("http://0x7f.0.0.1/", "non-canonical numeric host"),
        ("http:///no-host", "no host"),
        ("/relative/path", "non-http(s)"),
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(FetchError, match=re.escape(reason)):
        check_url(url, allow_private=False)


def test_check_url_accepts_and_strips_fragment() -> None:
    assert str(check_url("https://example.com/users/a#main-key", False)) == (
        "https://example.com/users/a"
    )
    assert str(check_url("http://127.0.0.1:8080/x", True)) == "http://127.0.0.1:8080/x"


async def test_resolver_refuses_localhost_unless_private_allowed() -> None:
    refused = GuardedResolver(allow_private=False)
    with pytest.raises(FetchError, match=r"refusing to connect to private address .*localhost"):
        await refused.resolve("localhost", 80, socket.AF_UNSPEC)
    await refused.close()

    allowed = GuardedResolver(allow_private=True)
    results = await allowed.resolve("localhost", 80, socket.AF_UNSPEC)
    assert results
    assert all(ipaddress.ip_address(r["host"]).is_loopback for r in results)
    await allowed.close()


class _FixedResolver(AbstractResolver):
    """Stands in for DNS: answers every name with fixed addresses (no network)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_resolver_refuses_if_any_address_is_forbidden() -> None:
    # A rebinding-style answer mixing a public and an internal address is refused as a whole.
    resolver = GuardedResolver(False, inner=_FixedResolver(["93.184.216.34", "10.0.0.5"]))
    with pytest.raises(FetchError, match=r"10\.0\.0\.5 \(resolved from evil\.example\)"):
        await resolver.resolve("evil.example", 443)


async def test_resolver_passes_public_answers_through() -> None:
    resolver = GuardedResolver(False, inner=_FixedResolver(["93.184.216.34", "2606:4700::1111"]))
    results = await resolver.resolve("good.example", 443)
    assert [r["host"] for r in results] == ["93.184.216.34", "2606:4700::1111"]


async def test_resolver_refuses_empty_answer() -> None:
    with pytest.raises(FetchError, match="did not resolve"):
        await GuardedResolver(False, inner=_FixedResolver([])).resolve("nothing.example", 443)
