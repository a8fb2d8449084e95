"""FederationClient against real aiohttp servers on 127.0.0.1 (fake remotes, real HTTP)."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from fedi.activitypub import client as fedi_client
from fedi.activitypub import netguard
from fedi.activitypub.client import (
    ClientSettings,
    DestinationRefused,
    FederationClient,
    parse_handle,
    parse_retry_after,
)
from fedi.activitypub.httpsig import parse_signature, verify_request
from fedi.activitypub.keys import SigningKey, generate_rsa_keypair
from fedi.activitypub.mediatypes import ACCEPT_AP, is_activitypub_media_type
from fedi.errors import FetchError, SignatureError
from tests.support.ports import port_of, reserve_port

AS_PROFILE = "https://www.w3.org/ns/activitystreams"
LD_AS = f'application/ld+json; profile="{AS_PROFILE}"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass
class Remote:
    server: TestServer
    seen: list[Seen] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"


StartRemote = Callable[[dict[tuple[str, str], Handler]], Awaitable[Remote]]
MakeClient = Callable[..., FederationClient]


@pytest.fixture
async def start_remote() -> AsyncIterator[StartRemote]:
    servers: list[TestServer] = []

    async def start(routes: dict[tuple[str, str], Handler]) -> Remote:
        seen: list[Seen] = []

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            body = await request.read()
            seen.append(Seen(request.method, request.path_qs, request.headers, body))
            return await handler(request)

        app = web.Application(middlewares=[record])
        for (method, path), handler in routes.items():
            app.router.add_route(method, path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Remote(server, seen)

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[FederationClient] = []

    def make(**overrides: Any) -> FederationClient:
        options: dict[str, Any] = {
            "allow_private_addresses": True,
            "connect_timeout": 2.0,
            "total_timeout": 5.0,
        }
        options.update(overrides)
        client = FederationClient(ClientSettings(**options))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_rsa_keypair()


@pytest.fixture(scope="module")
def key(keypair: tuple[str, str]) -> SigningKey:
    return SigningKey(key_id="http://127.0.0.1:1/actor#main-key", private_pem=keypair[0])


def ap(doc: dict[str, Any], content_type: str = "application/activity+json") -> web.Response:
    return web.Response(body=json.dumps(doc).encode(), headers={"Content-Type": content_type})


def self_doc(content_type: str = "application/activity+json", **extra: Any) -> Handler:
    """A handler serving an actor whose id is the URL it was requested at."""

    async def handler(request: web.Request) -> web.Response:
        doc = {"id": f"http://{request.host}{request.path}", "type": "Person", **extra}
        return ap(doc, content_type)

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    return handler


def is_rfc9421(headers: CIMultiDictProxy[str]) -> bool:
    return "Signature-Input" in headers and "Signature" in headers


def is_cavage(headers: CIMultiDictProxy[str]) -> bool:
    return "Signature" in headers and "Signature-Input" not in headers


def wants_rfc9421(status: int = 200, body: Handler | None = None) -> Handler:
    """Answers `status` to cavage-signed requests and delegates rfc9421 ones to `body`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if not is_rfc9421(request.headers):
            return web.Response(status=401, text="bad signature")
        if body is not None:
            return await body(request)
        return web.Response(status=status)

    return handler


# -- SSRF: loopback refused unless private addresses are allowed ------------------------------


async def test_loopback_ip_literal_refused(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    remote = await start_remote({("GET", "/actor"): self_doc(), ("POST", "/inbox"): self_doc()})
    client = make_client(allow_private_addresses=False)
    with pytest.raises(FetchError, match=r"private address 127\.0\.0\.1"):
        await client.fetch_object(remote.url("/actor"), sign_as=None)
    with pytest.raises(FetchError, match=r"private address 127\.0\.0\.1"):
        await client.post_activity(remote.url("/inbox"), b"{}", sign_as=key)
    with pytest.raises(FetchError, match=r"private address 127\.0\.0\.1"):
        await client.fetch_json(remote.url("/actor"), accept="application/json")
    assert remote.seen == []


async def test_loopback_name_refused_at_resolution(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    remote = await start_remote({("GET", "/actor"): self_doc(), ("POST", "/inbox"): self_doc()})
    client = make_client(allow_private_addresses=False)
    with pytest.raises(FetchError, match=r"private address .*resolved from localhost"):
        await client.fetch_object(f"http://localhost:{remote.server.port}/actor", sign_as=None)
    # A delivery's refusal is final (DestinationRefused): asking again would not help.
    with pytest.raises(DestinationRefused, match=r"private address .*resolved from localhost"):
        await client.post_activity(f"http://localhost:{remote.server.port}/inbox", b"{}",
                                   sign_as=key)
    with pytest.raises(FetchError, match=r"private address .*resolved from localhost"):
        await client.webfinger(f"alice@localhost:{remote.server.port}")
    assert remote.seen == []


async def test_loopback_allowed_for_development(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    remote = await start_remote({("GET", "/actor"): self_doc()})
    doc = await make_client().fetch_object(remote.url("/actor"), sign_as=None)
    assert doc["id"] == remote.url("/actor")


@pytest.fixture
def only_127_0_0_1_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat 127.0.0.1 as public so a loopback fake can stand in for a remote server, while
    every other address (including 127.0.0.2) stays forbidden. Even if a guard failed, the
    traffic would still go to loopback only."""
    real = netguard.forbidden_kind

    def patched(ip: netguard.IPAddress) -> str | None:
        return None if ip == ipaddress.ip_address("127.0.0.1") else real(ip)

    monkeypatch.setattr(netguard, "forbidden_kind", patched)


@pytest.mark.usefixtures("only_127_0_0_1_is_public")
async def test_redirect_to_forbidden_address_refused_before_connecting(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    async def to_other_loopback(request: web.Request) -> web.Response:
        location = f"http://127.0.0.2:{request.url.port}/actor"
        return web.Response(status=302, headers={"Location": location})

    remote = await start_remote({("GET", "/r"): to_other_loopback, ("GET", "/actor"): self_doc()})
    client = make_client(allow_private_addresses=False)
    # The guard lets the first hop through (127.0.0.1 is "public" here)...
    assert (await client.fetch_object(remote.url("/actor"), sign_as=None))["type"] == "Person"
    # ...and refuses the redirect target before any connection is made.
    with pytest.raises(FetchError, match=r"refusing to connect to private address 127\.0\.0\.2"):
        await client.fetch_object(remote.url("/r"), sign_as=None)
    assert [s.path_qs for s in remote.seen] == ["/actor", "/r"]


@pytest.mark.usefixtures("only_127_0_0_1_is_public")
async def test_id_refetch_to_forbidden_address_refused(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    async def evil(request: web.Request) -> web.Response:
        return ap({"id": f"http://127.0.0.2:{request.url.port}/users/victim", "type": "Person"})

    remote = await start_remote({("GET", "/evil"): evil})
    client = make_client(allow_private_addresses=False)
    with pytest.raises(FetchError, match=r"private address 127\.0\.0\.2"):
        await client.fetch_object(remote.url("/evil"), sign_as=None)


# -- content type (SECURITY 2) -----------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/html", "application/json", "application/ld+json"])
async def test_non_activitypub_content_type_refused(
    start_remote: StartRemote, make_client: MakeClient, content_type: str
) -> None:
    remote = await start_remote({("GET", "/actor"): self_doc(content_type)})
    with pytest.raises(FetchError, match="not served as ActivityPub"):
        await make_client().fetch_object(remote.url("/actor"), sign_as=None)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/activity+json",
        "application/activity+json; charset=utf-8",
        LD_AS,
        f"Application/LD+JSON;profile={AS_PROFILE}",
    ],
)
async def test_activitypub_content_types_accepted(
    start_remote: StartRemote, make_client: MakeClient, content_type: str
) -> None:
    remote = await start_remote({("GET", "/actor"): self_doc(content_type)})
    doc = await make_client().fetch_object(remote.url("/actor"), sign_as=None)
    assert doc["type"] == "Person"
    assert remote.seen[0].headers["Accept"] == ACCEPT_AP


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/activity+json", True),
        ('application/ld+json; profile="https://www.w3.org/ns/activitystreams"', True),
        (f'application/ld+json ; charset=utf-8 ; PROFILE="{AS_PROFILE}"', True),
        (f'application/ld+json; profile="https://example.com/x {AS_PROFILE}"', True),
        ("application/ld+json", False),
        ('application/ld+json; profile="https://www.w3.org/ns/activitystreamsX"', False),
        ('application/ld+json; foo="profile=https://www.w3.org/ns/activitystreams"', False),
        ("application/activity+json-x", False),
        ("application/json", False),
        ("text/html", False),
        ("", False),
        ("application/activity+json garbage", False),
    ],
)
def test_media_type_parsing(header: str, expected: bool) -> None:
    assert is_activitypub_media_type(header) is expected


# -- id must match the URL it came from (SECURITY 1) ------------------------------------------


async def test_fragment_removed_before_fetch_and_compare(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    remote = await start_remote({("GET", "/users/a"): self_doc()})
    doc = await make_client().fetch_object(remote.url("/users/a#main-key"), sign_as=None)
    assert doc["id"] == remote.url("/users/a")
    assert [s.path_qs for s in remote.seen] == ["/users/a"]


async def test_spoofed_id_refused_after_refetch(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    # The victim's server serves its real document; the evil one claims the victim's id.
    victim = await start_remote({("GET", "/users/victim"): self_doc(name="real")})

    async def evil(request: web.Request) -> web.Response:
        return ap({"id": victim.url("/users/victim"), "type": "Person", "name": "forged"})

    attacker = await start_remote({("GET", "/evil"): evil})
    # Refetched from the claimed id: the victim's real document is what comes back.
    doc = await make_client().fetch_object(attacker.url("/evil"), sign_as=None)
    assert doc == {"id": victim.url("/users/victim"), "type": "Person", "name": "real"}
    assert [s.path_qs for s in victim.seen] == ["/users/victim"]


async def test_id_mismatch_refused_when_refetch_does_not_match(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    async def elsewhere(request: web.Request) -> web.Response:
        return ap({"id": f"http://{request.host}/somewhere-else", "type": "Person"})

    victim = await start_remote({("GET", "/users/victim"): elsewhere})

    async def evil(request: web.Request) -> web.Response:
        return ap({"id": victim.url("/users/victim"), "type": "Person", "name": "forged"})

    attacker = await start_remote({("GET", "/evil"): evil})
    with pytest.raises(FetchError, match="does not match the URL it was fetched from") as info:
        await make_client().fetch_object(attacker.url("/evil"), sign_as=None)
    assert victim.url("/users/victim") in info.value.reason
    assert len(victim.seen) == 1  # refetched exactly once


async def test_id_refetch_failure_refused(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    victim = await start_remote({})  # 404 for everything

    async def evil(request: web.Request) -> web.Response:
        return ap({"id": victim.url("/users/victim"), "type": "Person"})

    attacker = await start_remote({("GET", "/evil"): evil})
    with pytest.raises(FetchError, match="404"):
        await make_client().fetch_object(attacker.url("/evil"), sign_as=None)


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "Person"},
        {"id": 5},
        {"id": "ftp://example.com/x"},
        {"id": "not a url"},
    ],
)
async def test_missing_or_unusable_id_refused(
    start_remote: StartRemote, make_client: MakeClient, doc: dict[str, Any]
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return ap(doc)

    remote = await start_remote({("GET", "/actor"): handler})
    with pytest.raises(FetchError, match=r"has no id|does not match"):
        await make_client().fetch_object(remote.url("/actor"), sign_as=None)
    assert len(remote.seen) == 1  # nothing else was contacted


async def test_id_with_other_fragment_refused(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return ap({"id": f"http://{request.host}{request.path}#other", "type": "Person"})

    remote = await start_remote({("GET", "/actor"): handler})
    with pytest.raises(FetchError, match="does not match"):
        await make_client().fetch_object(remote.url("/actor"), sign_as=None)


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"[1, 2]", "not a JSON object"), (b"{not json", "not valid JSON"), (b"[" * 100_000, "JSON")],
)
async def test_bad_json_refused(
    start_remote: StartRemote, make_client: MakeClient, body: bytes, reason: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/activity+json")

    remote = await start_remote({("GET", "/actor"): handler})
    with pytest.raises(FetchError, match=reason):
        await make_client().fetch_object(remote.url("/actor"), sign_as=None)


@pytest.mark.parametrize("status", [404, 410, 500])
async def test_error_status_refused(
    start_remote: StartRemote, make_client: MakeClient, status: int
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text="nope")

    remote = await start_remote({("GET", "/actor"): handler})
    with pytest.raises(FetchError, match=f"HTTP status {status}"):
        await make_client().fetch_object(remote.url("/actor"), sign_as=None)


# -- redirects (SECURITY 3) --------------------------------------------------------------------


async def test_one_redirect_followed_and_id_checked_against_final_url(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    remote = await start_remote({("GET", "/r"): redirect("/actor"), ("GET", "/actor"): self_doc()})
    doc = await make_client().fetch_object(remote.url("/r"), sign_as=None)
    assert doc["id"] == remote.url("/actor")
    assert [s.path_qs for s in remote.seen] == ["/r", "/actor"]


async def test_second_redirect_refused(start_remote: StartRemote, make_client: MakeClient) -> None:
    remote = await start_remote(
        {
            ("GET", "/r1"): redirect("/r2", 301),
            ("GET", "/r2"): redirect("/actor", 308),
            ("GET", "/actor"): self_doc(),
        }
    )
    with pytest.raises(FetchError, match="refusing to follow redirect"):
        await make_client().fetch_object(remote.url("/r1"), sign_as=None)
    assert [s.path_qs for s in remote.seen] == ["/r1", "/r2"]


async def test_redirect_target_content_type_rechecked(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    remote = await start_remote(
        {("GET", "/r"): redirect("/page"), ("GET", "/page"): self_doc("text/html")}
    )
    with pytest.raises(FetchError, match="not served as ActivityPub"):
        await make_client().fetch_object(remote.url("/r"), sign_as=None)


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("ftp://127.0.0.1/actor", "non-http"),
        ("file:///etc/passwd", "non-http"),
        ("http://user:secret@127.0.0.1:{port}/actor", "userinfo"),
    ],
)
async def test_redirect_to_refused_url(
    start_remote: StartRemote, make_client: MakeClient, location: str, reason: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        target = location.format(port=request.url.port)
        return web.Response(status=302, headers={"Location": target})

    remote = await start_remote({("GET", "/r"): handler, ("GET", "/actor"): self_doc()})
    with pytest.raises(FetchError, match=reason):
        await make_client().fetch_object(remote.url("/r"), sign_as=None)
    assert [s.path_qs for s in remote.seen] == ["/r"]


async def test_fetch_json_follows_only_the_allowed_number_of_redirects(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    async def nodeinfo(request: web.Request) -> web.Response:
        return web.json_response({"version": "2.1"})

    remote = await start_remote(
        {("GET", "/ni"): redirect("/nodeinfo/2.1"), ("GET", "/nodeinfo/2.1"): nodeinfo}
    )
    client = make_client()
    final, doc = await client.fetch_json(
        remote.url("/ni"), accept="application/json", allow_redirects=1
    )
    assert (final, doc) == (remote.url("/nodeinfo/2.1"), {"version": "2.1"})
    with pytest.raises(FetchError, match="refusing to follow redirect"):
        await client.fetch_json(remote.url("/ni"), accept="application/json")


# -- WebFinger ---------------------------------------------------------------------------------


def jrd_handler(links: list[dict[str, Any]]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"subject": request.query.get("resource"), "links": links},
            content_type="application/jrd+json",
        )

    return handler


@pytest.mark.parametrize("form", ["@alice@{host}", "alice@{host}", "acct:alice@{host}"])
async def test_webfinger_resolves_self_link(
    start_remote: StartRemote, make_client: MakeClient, form: str
) -> None:
    links = [
        {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": "http://x/"},
        {"rel": "self", "type": "text/html", "href": "http://127.0.0.1/not-this"},
        {"rel": "self", "type": LD_AS, "href": "http://127.0.0.1/users/alice"},
    ]
    remote = await start_remote({("GET", "/.well-known/webfinger"): jrd_handler(links)})
    actor = await make_client().webfinger(form.format(host=remote.host))
    assert actor == "http://127.0.0.1/users/alice"
    # https was tried first (a TLS handshake the plain-http fake cannot answer), then http.
    assert len(remote.seen) == 1
    assert remote.seen[0].path_qs.startswith("/.well-known/webfinger?resource=acct")
    assert remote.seen[0].headers["Accept"] == "application/jrd+json, application/json"


@pytest.mark.parametrize(
    "links",
    [
        [],
        [{"rel": "self", "type": "text/html", "href": "http://127.0.0.1/u"}],
        [{"rel": "self", "type": "application/activity+json", "href": "ftp://127.0.0.1/u"}],
        [{"rel": "self", "type": "application/activity+json", "href": "javascript:alert(1)"}],
        [{"rel": "self", "type": "application/activity+json"}],
    ],
)
async def test_webfinger_without_usable_self_link(
    start_remote: StartRemote, make_client: MakeClient, links: list[dict[str, Any]]
) -> None:
    remote = await start_remote({("GET", "/.well-known/webfinger"): jrd_handler(links)})
    with pytest.raises(FetchError, match="no ActivityPub self link"):
        await make_client().webfinger(f"alice@{remote.host}")


async def test_webfinger_redirect_refused(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    links = [{"rel": "self", "type": "application/activity+json", "href": "http://h/u"}]
    remote = await start_remote(
        {
            ("GET", "/.well-known/webfinger"): redirect("/wf2"),
            ("GET", "/wf2"): jrd_handler(links),
        }
    )
    with pytest.raises(FetchError, match="refusing to follow redirect"):
        await make_client().webfinger(f"alice@{remote.host}")
    assert len(remote.seen) == 1


async def test_webfinger_http_status_is_not_retried_over_http(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    remote = await start_remote({})
    with pytest.raises(FetchError, match="HTTP status 404"):
        await make_client().webfinger(f"alice@{remote.host}")


async def test_webfinger_falls_back_to_http_only_after_a_connection_failure(
    start_remote: StartRemote, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HTTP answer over https (here: 404) is final; only connection failures fall back."""
    links = [{"rel": "self", "type": "application/activity+json", "href": "http://h/u"}]
    remote = await start_remote({("GET", "/.well-known/webfinger"): jrd_handler(links)})
    client = make_client()
    real_get_json = client._get_json
    tried: list[str] = []

    async def https_answers_404(url: Any, **kwargs: Any) -> Any:
        tried.append(url.scheme)
        if url.scheme == "https":
            raise FetchError(f"fetching {url} failed with HTTP status 404")
        return await real_get_json(url, **kwargs)

    monkeypatch.setattr(client, "_get_json", https_answers_404)
    with pytest.raises(FetchError, match="HTTP status 404"):
        await client.webfinger(f"alice@{remote.host}")
    assert tried == ["https"]
    assert remote.seen == []


async def test_webfinger_https_only_without_private_addresses(
    start_remote: StartRemote, make_client: MakeClient, only_127_0_0_1_is_public: None
) -> None:
    remote = await start_remote({("GET", "/.well-known/webfinger"): jrd_handler([])})
    with pytest.raises(FetchError, match="could not connect"):
        await make_client(allow_private_addresses=False).webfinger(f"alice@{remote.host}")
    assert remote.seen == []  # no plain-http fallback in production mode


@pytest.mark.parametrize(
    ("handle", "parsed"),
    [
        ("@alice@example.com", ("alice", "example.com")),
        ("alice@example.com:8443", ("alice", "example.com:8443")),
        ("acct:alice@example.com", ("alice", "example.com")),
        ("ACCT:@alice@example.com", ("alice", "example.com")),
    ],
)
def test_parse_handle(handle: str, parsed: tuple[str, str]) -> None:
    assert parse_handle(handle) == parsed


@pytest.mark.parametrize(
    "handle", ["alice", "@alice", "alice@", "@alice@h@x", "alice@h/path", "alice@h?q", "a b@h"]
)
async def test_bad_handles_refused(make_client: MakeClient, handle: str) -> None:
    with pytest.raises(FetchError, match="not a valid handle"):
        await make_client().webfinger(handle)


# -- body size cap (SECURITY 13) ---------------------------------------------------------------


async def test_body_over_cap_refused_with_content_length(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    async def big(request: web.Request) -> web.Response:
        doc = {"id": f"http://{request.host}{request.path}", "pad": "x" * 2000}
        return ap(doc)

    remote = await start_remote({("GET", "/actor"): big})
    with pytest.raises(FetchError, match="response larger than 1000 bytes"):
        await make_client(max_body_bytes=1000).fetch_object(remote.url("/actor"), sign_as=None)
    doc = await make_client(max_body_bytes=3000).fetch_object(remote.url("/actor"), sign_as=None)
    assert len(doc["pad"]) == 2000


async def test_declared_content_length_refused_up_front(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    # Declares 5 MB but sends one byte and stalls: only the up-front check can refuse it fast.
    async def liar(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/activity+json"})
        resp.content_length = 5_000_000
        await resp.prepare(request)
        await resp.write(b"{")
        await asyncio.sleep(1.0)
        return resp

    remote = await start_remote({("GET", "/actor"): liar})
    client = make_client(max_body_bytes=1000, total_timeout=0.8)
    with pytest.raises(FetchError, match="response larger than 1000 bytes"):
        await client.fetch_object(remote.url("/actor"), sign_as=None)


async def test_chunked_body_over_cap_aborted_while_streaming(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(headers={"Content-Type": "application/activity+json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(400):  # up to 25 MB, far beyond the cap
                await resp.write(b"[" * 65536)
                sent += 65536
        except (ConnectionError, RuntimeError):
            pass
        return resp

    remote = await start_remote({("GET", "/actor"): endless})
    with pytest.raises(FetchError, match="response larger than 1048576 bytes"):
        await make_client().fetch_object(remote.url("/actor"), sign_as=None)
    assert "Content-Length" not in remote.seen[0].headers  # (request side; sanity)
    assert sent < 400 * 65536  # the client hung up instead of reading everything


async def test_cap_applies_to_decompressed_size(
    start_remote: StartRemote, make_client: MakeClient
) -> None:
    async def bomb(request: web.Request) -> web.Response:
        payload = json.dumps({"id": f"http://{request.host}/actor", "pad": "a" * 3_000_000})
        return web.Response(
            body=gzip.compress(payload.encode()),
            headers={"Content-Type": "application/activity+json", "Content-Encoding": "gzip"},
        )

    remote = await start_remote({("GET", "/actor"): bomb})
    with pytest.raises(FetchError, match="response larger than 1048576 bytes"):
        await make_client().fetch_object(remote.url("/actor"), sign_as=None)


# -- timeouts and connection failures ----------------------------------------------------------


async def test_slow_server_times_out(start_remote: StartRemote, make_client: MakeClient) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return ap({"id": f"http://{request.host}{request.path}"})

    remote = await start_remote({("GET", "/actor"): slow, ("POST", "/inbox"): slow})
    client = make_client(total_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        await client.fetch_object(remote.url("/actor"), sign_as=None)
    assert time.monotonic() - started < 0.9


async def test_stalled_body_times_out(start_remote: StartRemote, make_client: MakeClient) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/activity+json"})
        await resp.prepare(request)
        await resp.write(b'{"id": ')
        await asyncio.sleep(1.0)
        return resp

    remote = await start_remote({("GET", "/actor"): stall})
    with pytest.raises(FetchError, match="timed out"):
        await make_client(total_timeout=0.3).fetch_object(remote.url("/actor"), sign_as=None)


async def test_connection_refused_is_fetch_error(make_client: MakeClient, key: SigningKey) -> None:
    with reserve_port() as closed:  # bound, never listening: refused, and nobody else's
        url = f"http://127.0.0.1:{port_of(closed)}/inbox"
        with pytest.raises(FetchError, match="could not connect"):
            await make_client().post_activity(url, b"{}", sign_as=key)


def test_client_creates_no_session_outside_a_loop() -> None:
    client = FederationClient(ClientSettings())
    assert client._session is None
    assert client.preferred_scheme("example.com") == "cavage"


# -- signing and double knocking ---------------------------------------------------------------


async def test_fetch_object_is_signed(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    remote = await start_remote({("GET", "/actor"): self_doc()})
    client = make_client()
    await client.fetch_object(remote.url("/actor"), sign_as=key)
    await client.fetch_object(remote.url("/actor"), sign_as=None)
    signed, unsigned = remote.seen
    assert f'keyId="{key.key_id}"' in signed.headers["Signature"]
    assert signed.headers["Accept"] == ACCEPT_AP
    assert "Signature" not in unsigned.headers


async def test_signed_get_knocks_again_with_rfc9421(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    remote = await start_remote({("GET", "/actor"): wants_rfc9421(body=self_doc())})
    client = make_client()
    doc = await client.fetch_object(remote.url("/actor"), sign_as=key)
    assert doc["id"] == remote.url("/actor")
    assert [is_rfc9421(s.headers) for s in remote.seen] == [False, True]
    assert client.preferred_scheme(remote.host) == "rfc9421"


async def test_post_double_knocking_remembers_scheme(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    remote = await start_remote({("POST", "/inbox"): wants_rfc9421(202)})
    client = make_client()
    body = b'{"type": "Follow"}'

    first = await client.post_activity(remote.url("/inbox"), body, sign_as=key)
    assert (first.status, first.scheme_used) == (202, "rfc9421")
    assert [is_cavage(s.headers) for s in remote.seen] == [True, False]
    assert [is_rfc9421(s.headers) for s in remote.seen] == [False, True]
    assert client.preferred_scheme(remote.host) == "rfc9421"

    second = await client.post_activity(remote.url("/inbox"), body, sign_as=key)
    assert (second.status, second.scheme_used) == (202, "rfc9421")
    assert len(remote.seen) == 3 and is_rfc9421(remote.seen[2].headers)
    for seen in remote.seen:
        assert seen.body == body
        assert seen.headers["Content-Type"] == "application/activity+json"


async def test_post_cavage_success_needs_one_request(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    async def inbox(request: web.Request) -> web.Response:
        return web.Response(status=202 if is_cavage(request.headers) else 401)

    remote = await start_remote({("POST", "/inbox"): inbox})
    client = make_client()
    for _ in range(2):
        result = await client.post_activity(remote.url("/inbox"), b"{}", sign_as=key)
        assert (result.status, result.scheme_used) == (202, "cavage")
    assert len(remote.seen) == 2
    assert client.preferred_scheme(remote.host) == "cavage"


async def test_post_sends_headers_signed_ahead_for_the_first_knock(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    async def accept(_: web.Request) -> web.Response:
        return web.Response(status=202)

    remote = await start_remote({("POST", "/inbox"): accept})
    client = make_client()
    body = b'{"type": "Announce"}'
    ahead = client.signed_ahead(remote.url("/inbox"), body, sign_as=key)
    assert ahead is not None and ahead.scheme == "cavage"

    result = await client.post_activity(remote.url("/inbox"), body, sign_as=key, ahead=ahead)

    assert (result.status, result.scheme_used) == (202, "cavage")
    # The very headers signed ahead, not a second signature.
    assert remote.seen[0].headers["Signature"] == ahead.headers["Signature"]
    assert remote.seen[0].headers["Date"] == ahead.headers["Date"]


async def test_post_signs_again_when_the_first_knock_changed_since_signing_ahead(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    remote = await start_remote({("POST", "/inbox"): wants_rfc9421(202)})
    client = make_client()
    body = b'{"type": "Announce"}'
    stale = client.signed_ahead(remote.url("/inbox"), body, sign_as=key)  # cavage, as yet
    await client.post_activity(remote.url("/inbox"), body, sign_as=key)  # learns RFC 9421
    assert client.preferred_scheme(remote.host) == "rfc9421"

    result = await client.post_activity(remote.url("/inbox"), body, sign_as=key, ahead=stale)

    assert (result.status, result.scheme_used) == (202, "rfc9421")
    assert is_rfc9421(remote.seen[-1].headers) and len(remote.seen) == 3


def test_nothing_is_signed_ahead_for_an_inbox_the_guard_refuses(
    make_client: MakeClient, key: SigningKey
) -> None:
    client = make_client(allow_private_addresses=False)
    assert client.signed_ahead("http://127.0.0.1:9/inbox", b"{}", sign_as=key) is None


async def test_an_inbox_is_vetted_once_and_a_refused_one_every_time(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Signing ahead and sending each need the inbox vetted: a fan-out vets each inbox once
    (it costs more than the rest of the request's headers). Refusals are never remembered as
    vetted: a refused inbox stays refused, and nothing reaches it."""
    vetted: list[str] = []
    real_check = fedi_client.check_url

    def counting(url: Any, allow_private: bool) -> Any:
        vetted.append(str(url))
        return real_check(url, allow_private)

    monkeypatch.setattr(fedi_client, "check_url", counting)

    async def accept(_: web.Request) -> web.Response:
        return web.Response(status=202)

    remote = await start_remote({("POST", "/inbox"): accept})
    client = make_client()
    body = b'{"type": "Announce"}'
    for _ in range(2):
        ahead = client.signed_ahead(remote.url("/inbox"), body, sign_as=key)
        result = await client.post_activity(remote.url("/inbox"), body, sign_as=key, ahead=ahead)
        assert result.status == 202
    assert vetted == [remote.url("/inbox")]

    guarded = make_client(allow_private_addresses=False)
    for _ in range(2):
        assert guarded.signed_ahead(remote.url("/inbox"), body, sign_as=key) is None
        with pytest.raises(DestinationRefused, match=r"private address 127\.0\.0\.1"):
            await guarded.post_activity(remote.url("/inbox"), body, sign_as=key)
    assert len(vetted) == 1 + 4
    assert len(remote.seen) == 2


async def test_post_response_body_read_is_capped(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=500)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        deadline = time.monotonic() + 3.0
        try:
            while time.monotonic() < deadline:
                await resp.write(b"e" * 65536)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    remote = await start_remote({("POST", "/inbox"): endless})
    client = make_client(total_timeout=1.0)
    result = await client.post_activity(remote.url("/inbox"), b"{}", sign_as=key)
    assert (result.status, result.body_excerpt) == (500, "e" * 200)


@pytest.mark.parametrize(("status", "requests"), [(401, 2), (403, 2), (400, 2), (404, 1), (500, 1)])
async def test_post_error_statuses_returned_not_raised(
    start_remote: StartRemote,
    make_client: MakeClient,
    key: SigningKey,
    status: int,
    requests: int,
) -> None:
    async def inbox(request: web.Request) -> web.Response:
        return web.Response(status=status, text="x" * 100_000)

    remote = await start_remote({("POST", "/inbox"): inbox})
    client = make_client()
    result = await client.post_activity(remote.url("/inbox"), b"{}", sign_as=key)
    assert result.status == status
    assert result.body_excerpt == "x" * 200
    assert result.retry_after is None
    assert len(remote.seen) == requests  # only 400/401/403 knock again
    assert client.preferred_scheme(remote.host) == "cavage"  # nothing new learned


async def test_post_retry_after_delta_seconds_and_http_date(
    start_remote: StartRemote, make_client: MakeClient, key: SigningKey
) -> None:
    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "120"}, text="slow down")

    async def down(request: web.Request) -> web.Response:
        when = email.utils.formatdate(time.time() + 60, usegmt=True)
        return web.Response(status=503, headers={"Retry-After": when})

    remote = await start_remote({("POST", "/busy"): busy, ("POST", "/down"): down})
    client = make_client()
    result = await client.post_activity(remote.url("/busy"), b"{}", sign_as=key)
    assert (result.status, result.retry_after, result.body_excerpt) == (429, 120.0, "slow down")
    result = await client.post_activity(remote.url("/down"), b"{}", sign_as=key)
    assert result.status == 503
    assert result.retry_after is not None and 55.0 <= result.retry_after <= 61.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        (" 30 ", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 100.0),
        ("Wed, 21 Oct 2015 07:20:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("\u00b9", None),  # a digit to str.isdigit, not to float()
        ("9" * 400, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:26:20 GMT").timestamp()
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize("scheme", ["cavage", "rfc9421"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_requests_verify_on_the_receiving_side(
    start_remote: StartRemote,
    make_client: MakeClient,
    key: SigningKey,
    keypair: tuple[str, str],
    scheme: str,
    method: str,
) -> None:
    """What is signed is what goes over the wire (Host, target, digest), for both schemes."""
    verified: list[str] = []

    async def verifying(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            params = parse_signature(request.headers)
            if params.scheme != scheme:
                return web.Response(status=401, text=f"want {scheme}")
            url = f"http://{request.host}{request.path_qs}"
            verify_request(params, request.method, url, request.headers, body or None, keypair[1])
        except SignatureError as exc:
            return web.Response(status=401, text=exc.reason)
        verified.append(params.scheme)
        if request.method == "POST":
            return web.Response(status=202)
        return ap({"id": f"http://{request.host}{request.path}", "type": "Person"})

    remote = await start_remote({(method, "/a/b"): verifying})
    client = make_client()
    if method == "POST":
        result = await client.post_activity(remote.url("/a/b?x=1"), b'{"a": 1}', sign_as=key)
        assert result.status == 202, result.body_excerpt
    else:
        await client.fetch_object(remote.url("/a/b"), sign_as=key)
    assert verified == [scheme]
    assert client.preferred_scheme(remote.host) == scheme
