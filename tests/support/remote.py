"""A fake remote ActivityPub server on loopback: real HTTP, real keys, scripted answers.

It serves actor documents (counting fetches), records inbox POSTs and verifies their
signatures with fedi's own checker against the signer's public key.
"""

from __future__ import annotations

import asyncio
import json
import socket
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fedi.activitypub.httpsig import Scheme, sign_request
from fedi.activitypub.keys import SigningKey, generate_rsa_keypair
from fedi.activitypub.vocab import AS_CONTEXT
from tests.support.ports import pause, port_of, reserve_port

_KEYS: list[tuple[str, str]] = []


def test_keypair(index: int) -> tuple[str, str]:
    """RSA keys are slow to make; tests reuse a few."""
    while len(_KEYS) <= index:
        _KEYS.append(generate_rsa_keypair())
    return _KEYS[index]


@dataclass
class RemoteActor:
    uri: str
    name: str
    private_pem: str
    public_pem: str
    key_id: str

    @property
    def key(self) -> SigningKey:
        return SigningKey(self.key_id, self.private_pem)

    @property
    def inbox(self) -> str:
        return f"{self.uri}/inbox"


@dataclass
class InboxPost:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class FakeRemote:
    # Bound from the start and held until the remote is gone: the port is known before
    # start() (actor URIs name it) and no other process can take it, even across restarts.
    sock: socket.socket = field(default_factory=reserve_port)
    actors: dict[str, RemoteActor] = field(default_factory=dict)
    fetches: Counter[str] = field(default_factory=Counter)
    posts: list[InboxPost] = field(default_factory=list)
    # Status for each inbox POST, in order; the last one repeats.
    statuses: list[int] = field(default_factory=lambda: [202])
    response_headers: dict[str, str] = field(default_factory=dict)
    on_post: Callable[[InboxPost], None] | None = None
    delay: float = 0.0  # seconds before each inbox answer (a slow peer)
    publish_shared_inbox: bool = True
    # WebFinger answers: acct name → actor URI (defaults to the actor of that name).
    webfinger_links: dict[str, str] = field(default_factory=dict)
    # Objects served at /objects/{id} (absent: 404), and actor types other than Person.
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    actor_types: dict[str, str] = field(default_factory=dict)
    # Ed25519 assertion keys (FEP-521a) by actor name: (private PEM, publicKeyMultibase).
    assertion_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        weakref.finalize(self, self.sock.close)

    @property
    def port(self) -> int:
        return port_of(self.sock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def shared_inbox(self) -> str:
        return f"{self.base_url}/inbox"

    def add_actor(self, name: str, key_index: int = 0) -> RemoteActor:
        private_pem, public_pem = test_keypair(key_index)
        uri = f"{self.base_url}/users/{name}"
        actor = RemoteActor(uri, name, private_pem, public_pem, f"{uri}#main-key")
        self.actors[name] = actor
        return actor

    def document(self, actor: RemoteActor) -> dict[str, Any]:
        doc = self._document(actor)
        if actor.name in self.assertion_keys:
            doc["assertionMethod"] = [{
                "id": f"{actor.uri}#ed25519-key", "type": "Multikey", "controller": actor.uri,
                "publicKeyMultibase": self.assertion_keys[actor.name][1]}]
        return doc

    def _document(self, actor: RemoteActor) -> dict[str, Any]:
        return {
            "@context": [AS_CONTEXT, "https://w3id.org/security/v1"],
            "id": actor.uri, "type": self.actor_types.get(actor.name, "Person"),
            "preferredUsername": actor.name,
            "inbox": actor.inbox, "outbox": f"{actor.uri}/outbox",
            "followers": f"{actor.uri}/followers",
            "endpoints": {"sharedInbox": self.shared_inbox} if self.publish_shared_inbox else {},
            "publicKey": {"id": actor.key_id, "owner": actor.uri,
                          "publicKeyPem": actor.public_pem},
        }

    def signed(
        self, actor: RemoteActor, url: str, body: bytes, scheme: Scheme = "cavage",
        key: SigningKey | None = None, extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        headers = {"Content-Type": "application/activity+json", **(extra or {})}
        return sign_request(scheme, "POST", url, headers, body, key or actor.key)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/webfinger", self._webfinger)
        app.router.add_get("/users/{name}", self._actor)
        app.router.add_get("/objects/{id}", self._object)
        app.router.add_post("/users/{name}/inbox", self._inbox)
        app.router.add_post("/inbox", self._inbox)
        await self.serve(app)

    async def serve(self, app: web.Application) -> None:
        """Serve `app` on this remote's socket (for subclasses with routes of their own)."""
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        # A duplicate, which the server closes when it stops; self.sock keeps the port.
        await web.SockSite(self._runner, self.sock.dup()).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        pause(self.sock)  # a stopped remote refuses connections, and may start again

    async def _actor(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.fetches[name] += 1
        actor = self.actors.get(name)
        if actor is None:
            return web.Response(status=410)
        return web.Response(
            body=json.dumps(self.document(actor)), content_type="application/activity+json"
        )

    async def _object(self, request: web.Request) -> web.StreamResponse:
        self.fetches[f"objects/{request.match_info['id']}"] += 1
        found = self.objects.get(request.match_info["id"])
        if found is None:
            return web.Response(status=404)
        return web.Response(body=json.dumps(found), content_type="application/activity+json")

    async def _webfinger(self, request: web.Request) -> web.StreamResponse:
        resource = request.query.get("resource", "")
        name = resource.removeprefix("acct:").split("@")[0]
        href = self.webfinger_links.get(name) or (
            self.actors[name].uri if name in self.actors else None
        )
        if href is None:
            return web.Response(status=404)
        return web.json_response(
            {"subject": resource,
             "links": [{"rel": "self", "type": "application/activity+json", "href": href}]},
            content_type="application/jrd+json",
        )

    async def _inbox(self, request: web.Request) -> web.StreamResponse:
        post = InboxPost(request.path, dict(request.headers), await request.read())
        if self.delay:
            await asyncio.sleep(self.delay)
        self.posts.append(post)
        if self.on_post is not None:
            self.on_post(post)
        index = min(len(self.posts) - 1, len(self.statuses) - 1)
        return web.Response(status=self.statuses[index], headers=self.response_headers)
