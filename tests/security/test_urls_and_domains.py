"""Issue 12 items 3, 4, 6 and 9 (WebFinger), against a running `fedi serve` over real HTTP.

A hostile peer (a small aiohttp server on loopback with real RSA keys) signs what it sends.
- Script URLs (SECURITY 20): a remote actor's `url`, icon and a post's links that are not
  http(s) are never stored or linked; a post id `javascript://<actor host>/x` is not the
  actor's host; pages carry a Content-Security-Policy that forbids every script.
- One spelling per host (SECURITY 22): a suspended address written another way is refused
  at the inbox (403) before any key is fetched; a signed GET from a suspended domain is 403.
- Published counts are of what an anonymous visitor may see.
- A hidden group does not answer WebFinger; fedi joins it by the URI its invite link carries.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aiohttp import web

from fedi.activitypub.httpsig import sign_request
from fedi.activitypub.keys import SigningKey
from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC
from tests.support.instance import FediInstance, eventually
from tests.support.remote import test_keypair as keypair

pytestmark = pytest.mark.federation

AP = "application/activity+json"
BAD_URLS = {
    "javascript": "javascript:alert(document.domain)",
    "mixed-case javascript": "JaVaScRiPt:alert(1)",
    "data": "data:text/html,<script>alert(1)</script>",
    "file": "file:///etc/passwd",
    "schemeless": "//evil.example/x",
}


@dataclass
class Peer:
    """A hostile server: serves the actor documents it is told to, counts fetches, takes
    inbox posts. Listens on `bind` (any 127/8 address) on a port the kernel picks."""

    bind: str = "127.0.0.1"
    spelling: str | None = None  # how its ids write the host (default: the bound address)
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetches: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.spelling or self.bind}:{self.port}"

    @property
    def domain(self) -> str:
        return f"{self.bind}:{self.port}"

    def actor(self, name: str, **extra: Any) -> tuple[str, SigningKey]:
        private_pem, public_pem = keypair(0)
        uri = f"{self.base_url}/users/{name}"
        self.actors[name] = {
            "@context": [AS_CONTEXT, "https://w3id.org/security/v1"],
            "id": uri, "type": "Person", "preferredUsername": name, "name": name.title(),
            "inbox": f"{uri}/inbox", "outbox": f"{uri}/outbox",
            "followers": f"{uri}/followers",
            "publicKey": {"id": f"{uri}#main-key", "owner": uri, "publicKeyPem": public_pem},
            **extra,
        }
        return uri, SigningKey(f"{uri}#main-key", private_pem)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/users/{name}", self._actor)
        app.router.add_post("/users/{name}/inbox", self._inbox)
        app.router.add_post("/inbox", self._inbox)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind((self.bind, 0))  # the kernel's free port, held from here on
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _actor(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.fetches[name] += 1
        doc = self.actors.get(name)
        if doc is None:
            return web.Response(status=404)
        return web.Response(body=json.dumps(doc), content_type=AP)

    async def _inbox(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=202)


async def _peer(bind: str = "127.0.0.1", spelling: str | None = None) -> Peer:
    peer = Peer(bind=bind, spelling=spelling)
    await peer.start()
    return peer


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    server = await _peer()
    yield server
    await server.stop()


@pytest.fixture
def fedi(instances: list[FediInstance]) -> FediInstance:
    a = instances[0]
    a.cli("create-user", "alice", "--admin")
    a.cli("create-group", "cats", "--owner", "alice", "--title", "Cats")
    return a


def group_uri(fedi: FediInstance, name: str = "cats") -> str:
    return f"{fedi.base_url}/groups/{name}"


async def deliver(
    fedi: FediInstance, key: SigningKey, activity: dict[str, Any], inbox: str | None = None
) -> httpx.Response:
    url = inbox or f"{group_uri(fedi)}/inbox"
    body = json.dumps(activity).encode()
    headers = sign_request("cavage", "POST", url, {"Content-Type": AP}, body, key)
    async with httpx.AsyncClient() as http:
        return await http.post(url, content=body, headers=headers, timeout=30)


def activity(actor: str, kind: str, obj: Any) -> dict[str, Any]:
    base = actor.rsplit("/users/", 1)[0]
    return {"@context": AS_CONTEXT, "id": f"{base}/activities/{uuid.uuid4().hex}",
            "type": kind, "actor": actor, "object": obj}


async def processed(fedi: FediInstance) -> bool:
    rows = await fedi.query("SELECT count(*) FROM inbox_items WHERE state = 'new'")
    return bool(rows[0][0] == 0)


async def join(fedi: FediInstance, actor: str, key: SigningKey) -> None:
    response = await deliver(fedi, key, activity(actor, "Follow", group_uri(fedi)))
    assert response.status_code == 202, response.text
    await eventually(
        lambda: fedi.query(
            "SELECT 1 FROM follows f JOIN actors a ON a.id = f.follower_id "
            "WHERE a.uri = :u AND f.state = 'accepted'", u=actor),
        what=f"{actor} joined",
    )


def note(actor: str, fedi: FediInstance, text: str, **extra: Any) -> dict[str, Any]:
    base = actor.rsplit("/users/", 1)[0]
    return {"id": f"{base}/notes/{uuid.uuid4().hex}", "type": "Note", "attributedTo": actor,
            "content": f"<p>{text}</p>", "to": [PUBLIC], "cc": [group_uri(fedi)],
            "audience": group_uri(fedi), **extra}


async def page(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url, headers={"Accept": "text/html"})


# -- item 3: script URLs -----------------------------------------------------------------


# A script element the policy allows: fedi's own file, nothing inside it.
OWN_SCRIPT = re.compile(r'<script src="/static/[a-z]+\.js"( defer)?></script>')


async def test_pages_send_a_policy_that_forbids_inline_and_foreign_script(
    fedi: FediInstance,
) -> None:
    fedi.start()
    post = fedi.cli("post", "--as", "alice", "--group", "cats", "Hello").stdout.strip()
    for url in (f"{fedi.base_url}/", group_uri(fedi), f"{fedi.base_url}/users/alice", post):
        response = await page(url)
        assert response.status_code == 200, url
        policy = response.headers.get("content-security-policy", "")
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        # Scripts from this origin only (live updates, /static/live.js), and they may talk
        # to this origin only; nothing inline, nothing evaluated.
        assert directives.get("default-src") == "'none'", (url, policy)
        assert directives.get("script-src") == "'self'", (url, policy)
        assert directives.get("connect-src") == "'self'", (url, policy)
        assert directives.get("style-src") == "'self'", (url, policy)
        assert "unsafe-" not in policy and "data:" not in policy
        assert directives.get("object-src") == "'none'"
        assert directives.get("base-uri") == "'none'"
        assert directives.get("frame-ancestors") == "'none'"
        assert response.headers.get("x-content-type-options") == "nosniff"
        # The pages do not need what the policy forbids: no inline script or style, no
        # handler attributes; a script element, if any, only loads fedi's own file.
        assert "<script" not in OWN_SCRIPT.sub("", response.text), url
        assert "<style" not in response.text and " style=" not in response.text
        assert re.search(r"<[^>]*\son[a-z]+=", response.text) is None, url
    css = await page(f"{fedi.base_url}/static/fedi.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    script = await page(f"{fedi.base_url}/static/live.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("bad", list(BAD_URLS.values()), ids=list(BAD_URLS))
async def test_a_remote_actor_url_that_is_not_http_is_neither_stored_nor_linked(
    fedi: FediInstance, peer: Peer, bad: str
) -> None:
    fedi.start()
    actor, key = peer.actor("mallory", url=bad, icon={"type": "Image", "url": bad},
                           attachment=[{"type": "PropertyValue", "name": "site",
                                        "value": f'<a href="{bad}">site</a>', "href": bad}])
    await join(fedi, actor, key)
    local = fedi.cli("post", "--as", "alice", "--group", "cats", "Local thread").stdout.strip()
    thread = note(actor, fedi, "A thread")
    reply = note(actor, fedi, "A reply", inReplyTo=local)
    for obj in (thread, reply):
        response = await deliver(fedi, key, activity(actor, "Create", obj))
        assert response.status_code == 202, response.text
        await eventually(
            lambda obj=obj: fedi.query("SELECT 1 FROM posts WHERE uri = :u", u=obj["id"]),
            what="the post stored",
        )
    [(url,)] = await fedi.query("SELECT url FROM actors WHERE uri = :u", u=actor)
    assert url is None
    # The group page lists mallory's thread; the thread page shows mallory's reply.
    for shown in (group_uri(fedi), local):
        html = (await page(shown)).text
        assert "Mallory" in html, shown
        assert bad.lower() not in html.lower()
        assert "javascript:" not in html.lower()
    # The group page links the author to this server's page of their actor id instead.
    assert f'href="/lookup?{urlencode({"q": actor})}"' in (await page(group_uri(fedi))).text


async def test_a_post_id_with_a_script_scheme_fails_the_same_host_check(
    fedi: FediInstance, peer: Peer
) -> None:
    fedi.start()
    actor, key = peer.actor("mallory")
    await join(fedi, actor, key)
    hostile = note(actor, fedi, "Looks like mine")
    hostile["id"] = f"javascript://{peer.domain}/%0aalert(document.cookie)"
    response = await deliver(fedi, key, activity(actor, "Create", hostile))
    assert response.status_code == 202, response.text
    await eventually(lambda: processed(fedi), what="the inbox processed")
    assert await fedi.query("SELECT uri FROM posts WHERE uri LIKE 'javascript%'") == []
    assert "javascript:" not in (await page(group_uri(fedi))).text.lower()


async def test_links_inside_a_remote_post_are_stored_only_if_http(
    fedi: FediInstance, peer: Peer
) -> None:
    fedi.start()
    actor, key = peer.actor("mallory")
    await join(fedi, actor, key)
    thread = note(
        actor, fedi, 'See <a href="javascript:alert(1)">this</a>',
        url="javascript:alert(1)", context="javascript:alert(2)",
        inReplyTo="data:text/html,x",
        attachment=[{"type": "Document", "url": "javascript:alert(3)"},
                    {"type": "Document", "url": f"{peer.base_url}/files/ok.png"}],
        tag=[{"type": "Hashtag", "href": "file:///etc/passwd", "name": "#x"},
             {"type": "Mention", "href": "javascript:alert(4)", "name": "@m"}],
        icon={"type": "Image", "url": "data:image/svg+xml,<svg onload=alert(5)>"},
    )
    response = await deliver(fedi, key, activity(actor, "Create", thread))
    assert response.status_code == 202, response.text
    stored = await eventually(
        lambda: fedi.query(
            "SELECT document, in_reply_to, content FROM posts WHERE uri = :u", u=thread["id"]),
        what="the post stored",
    )
    document, in_reply_to, content = stored[0]
    for scheme in ("javascript:", "data:", "file:"):
        assert scheme not in document and scheme not in content
    assert in_reply_to is None
    assert f"{peer.base_url}/files/ok.png" in document  # http(s) links are kept
    html = (await page(group_uri(fedi))).text
    assert "javascript:" not in html and "data:" not in html


# -- item 4: one spelling per host -------------------------------------------------------

SPELLINGS = {
    "ipv4-mapped": "[::ffff:127.0.0.22]",
    "ipv4-mapped hex": "[::ffff:7f00:16]",
    "ipv4-mapped long": "[0:0:0:0:0:ffff:7f00:16]",
    "ipv4-compatible": "[::127.0.0.22]",
    "decimal": "2130706454",
    "hex": "0x7f000016",
    "short": "127.22",
}


@pytest.mark.parametrize("spelling", list(SPELLINGS.values()), ids=list(SPELLINGS))
async def test_a_suspended_address_in_another_spelling_is_refused_before_any_key_fetch(
    fedi: FediInstance, spelling: str
) -> None:
    peer = await _peer(bind="127.0.0.22", spelling=spelling)
    try:
        fedi.cli("admin", "domain-block", "add", peer.domain, "--severity", "suspend")
        fedi.start()
        actor, key = peer.actor("mallory")
        response = await deliver(fedi, key, activity(actor, "Follow", group_uri(fedi)))
        assert response.status_code == 403, response.text
        assert "suspended" in response.json()["error"]
        assert peer.fetches["mallory"] == 0
        assert await fedi.query("SELECT count(*) FROM inbox_items") == [(0,)]
        assert await fedi.query("SELECT count(*) FROM actors WHERE NOT local") == [(0,)]
        assert await fedi.query("SELECT count(*) FROM follows") == [(0,)]
    finally:
        await peer.stop()


async def test_a_block_typed_in_another_spelling_covers_the_plain_address(
    fedi: FediInstance,
) -> None:
    peer = await _peer(bind="127.0.0.22")
    try:
        out = fedi.cli("admin", "domain-block", "add", f"[::ffff:7f00:16]:{peer.port}",
                       "--severity", "suspend").stdout
        assert f"127.0.0.22:{peer.port}" in out  # stored in its one spelling
        fedi.start()
        actor, key = peer.actor("mallory")
        response = await deliver(fedi, key, activity(actor, "Follow", group_uri(fedi)))
        assert response.status_code == 403, response.text
        assert peer.fetches["mallory"] == 0
    finally:
        await peer.stop()


async def signed_get(url: str, key: SigningKey) -> httpx.Response:
    headers = sign_request("cavage", "GET", url, {"Accept": AP}, None, key)
    async with httpx.AsyncClient() as http:
        return await http.get(url, headers=headers)


async def test_a_signed_get_from_a_suspended_domain_is_refused(
    fedi: FediInstance, peer: Peer
) -> None:
    fedi.start()
    _, key = peer.actor("mallory")
    # Before the block the same signed fetch is served.
    assert (await signed_get(group_uri(fedi), key)).status_code == 200
    fetched_before = peer.fetches["mallory"]
    fedi.cli("admin", "domain-block", "add", peer.domain, "--severity", "suspend")
    for url in (group_uri(fedi), f"{fedi.base_url}/users/alice", f"{group_uri(fedi)}/outbox"):
        response = await eventually(
            lambda url=url: _refused(url, key), timeout=10, what=f"{url} refused")
        assert response.status_code == 403
        assert "suspended" in response.json()["error"]
        assert "publicKey" not in response.text and "inbox" not in response.text
    assert peer.fetches["mallory"] == fetched_before  # refused before any key fetch
    # Unsigned (anonymous) fetches of public documents are still answered.
    async with httpx.AsyncClient() as http:
        assert (await http.get(group_uri(fedi), headers={"Accept": AP})).status_code == 200


async def _refused(url: str, key: SigningKey) -> httpx.Response | None:
    response = await signed_get(url, key)
    return response if response.status_code != 200 else None


# -- item 6: counts that leak ------------------------------------------------------------


async def nodeinfo_posts(fedi: FediInstance) -> int:
    async with httpx.AsyncClient() as http:
        body = (await http.get(f"{fedi.base_url}/nodeinfo/2.1")).json()
    posts: int = body["usage"]["localPosts"]
    return posts


async def test_published_counts_are_what_an_anonymous_visitor_may_see(
    fedi: FediInstance,
) -> None:
    fedi.cli("create-user", "bob")
    fedi.cli("create-group", "club", "--owner", "alice", "--privacy", "private")
    fedi.cli("create-group", "den", "--owner", "alice", "--privacy", "hidden")
    fedi.start()

    def post(*args: str) -> str:
        return str(fedi.cli("post", "--as", "alice", *args).stdout.strip())

    thread = post("--group", "cats", "--title", "Open", "Open to all")
    post("--group", "cats", "--reply-to", thread, "A public reply")
    post("--group", "cats", "--reply-to", thread, "--visibility", "members", "Members reply")
    deleted_reply = post("--group", "cats", "--reply-to", thread, "Soon deleted")
    removed_reply = post("--group", "cats", "--reply-to", thread, "Soon removed")
    post("--group", "cats", "--visibility", "members", "Members only")
    post("--group", "cats", "--visibility", "moderators", "Moderators only")
    post("--group", "club", "In a private group")
    post("--group", "den", "In a hidden group")
    reported = post("--group", "cats", "Soon held")
    fedi.cli("delete", "--as", "alice", deleted_reply)
    fedi.cli("mod", "remove", "cats", removed_reply, "--reason", "spam")
    fedi.cli("mod", "settings", "cats", "--report-threshold", "1")
    fedi.cli("report", "--as", "bob", reported, "--comment", "spam")
    held = await fedi.query("SELECT held FROM posts WHERE uri = :u", u=reported)
    assert held[0][0] is not None

    # Visible to anyone: the thread and its public reply.
    assert await nodeinfo_posts(fedi) == 2
    html = (await page(group_uri(fedi))).text
    assert "1 reply" in html, html


# -- item 9: WebFinger for hidden groups -------------------------------------------------


async def webfinger(fedi: FediInstance, resource: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"{fedi.base_url}/.well-known/webfinger",
                              params={"resource": resource})


async def test_a_hidden_group_is_not_discoverable_but_its_invite_still_works(
    instances: list[FediInstance],
) -> None:
    a, b = instances[0], instances[1]
    a.cli("create-user", "alice", "--admin")
    a.cli("create-group", "den", "--owner", "alice", "--privacy", "hidden")
    a.cli("create-group", "cats", "--owner", "alice")
    b.cli("create-user", "bob")
    a.start()
    b.start()
    den = group_uri(a, "den")
    for resource in (f"acct:den@{a.domain}", f"den@{a.domain}", den):
        response = await webfinger(a, resource)
        assert response.status_code == 404, resource
        assert "den" not in response.text.replace(resource, "")
    assert (await webfinger(a, f"acct:cats@{a.domain}")).status_code == 200

    # Without the invite, B cannot even find the group.
    refused = b.cli("follow", "--as", "bob", f"@den@{a.domain}", check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr

    link = a.cli("mod", "invite", "den").stdout.strip().split()[-1]
    b.cli("follow", "--as", "bob", f"@den@{a.domain}", "--invite", link)
    await eventually(
        lambda: b.query(
            "SELECT 1 FROM follows f JOIN actors t ON t.id = f.target_id "
            "WHERE t.uri = :u AND f.state = 'accepted'", u=den),
        what="bob joined the hidden group",
    )
    # A link for another group does not let a handle stand for it.
    wrong = b.cli("follow", "--as", "bob", f"@cats@{a.domain}", "--invite", link, check=False)
    assert wrong.returncode != 0 and "not for cats" in wrong.stderr + wrong.stdout
