"""The inbox verifies RFC 9421 `ed25519` signatures with the sender's own Ed25519 key.

The keyid may name the actor's FEP-521a Multikey (`actor#frag`, the key the actor document
publishes), or a CryptographicKey document of its own (what fedi's keyid names, so Fedify can
verify it) that holds that same key. Any other Ed25519 key is refused. fedi serves its own key
documents.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from fedi.activitypub import integrity
from fedi.activitypub.keys import SigningKey, is_multikey, multikey_public_pem
from fedi.actors.local import create_group, create_user
from fedi.store.models import Actor, Follow
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

GROUP = f"{BASE_URL}/groups/cats"
INBOX = f"{GROUP}/inbox"


class KeyDocuments(FakeRemote):
    """A remote that also serves CryptographicKey documents at /users/{name}/ed25519-key;
    `served_keys` says which Ed25519 public key PEM each holds."""

    served_keys: dict[str, str]

    async def start(self) -> None:
        self.served_keys = getattr(self, "served_keys", {})
        app = web.Application()
        app.router.add_get("/users/{name}", self._actor)
        app.router.add_get("/users/{name}/ed25519-key", self._key)
        await self.serve(app)

    async def _key(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        actor = self.actors[name]
        document = {"@context": "https://w3id.org/security/v1", "id": f"{actor.uri}/ed25519-key",
                    "type": "CryptographicKey", "owner": actor.uri,
                    "publicKeyPem": self.served_keys[name]}
        return web.Response(body=json.dumps(document), content_type="application/activity+json")


@pytest.fixture
async def remote() -> AsyncIterator[KeyDocuments]:
    server = KeyDocuments()
    server.add_actor("fay")
    server.assertion_keys["fay"] = integrity.generate_ed25519_keypair()
    server.served_keys = {"fay": multikey_public_pem(server.assertion_keys["fay"][1])}
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[InProcess]:
    async with running_app(database_url) as running:
        async with running.services.sessionmaker() as session, session.begin():
            await create_user(session, running.services.urls, "owner")
            await create_group(session, running.services.urls, "cats", owner="owner")
        yield running


async def send_follow(fedi: InProcess, remote: FakeRemote, key: SigningKey) -> Any:
    actor = remote.actors["fay"].uri
    body = json.dumps({"@context": "https://www.w3.org/ns/activitystreams",
                       "id": f"{remote.base_url}/activities/follow-1", "type": "Follow",
                       "actor": actor, "object": GROUP}).encode()
    headers = remote.signed(remote.actors["fay"], INBOX, body, scheme="rfc9421", key=key)
    assert 'alg="ed25519"' in headers["Signature-Input"]
    return await fedi.http.post(INBOX, content=body, headers=headers)


async def follows(fedi: InProcess) -> int:
    assert await fedi.services.processor.run_once() in (0, 1)
    async with fedi.services.sessionmaker() as session:
        return len((await session.execute(select(Follow))).scalars().all())


@pytest.mark.parametrize("suffix", ["#ed25519-key", "/ed25519-key"],
                         ids=["the actor's Multikey", "a key document with the actor's key"])
async def test_keyid_naming_the_actors_ed25519_key(
    fedi: InProcess, remote: KeyDocuments, suffix: str
) -> None:
    key = SigningKey(remote.actors["fay"].uri + suffix, remote.assertion_keys["fay"][0])
    response = await send_follow(fedi, remote, key)
    assert response.status_code == 202, response.text
    assert await follows(fedi) == 1


async def test_a_key_document_with_another_key_is_refused(
    fedi: InProcess, remote: KeyDocuments
) -> None:
    # The document and the signature agree, but the actor publishes a different key.
    other_private, other_multibase = integrity.generate_ed25519_keypair()
    remote.served_keys["fay"] = multikey_public_pem(other_multibase)
    uri = remote.actors["fay"].uri
    response = await send_follow(fedi, remote, SigningKey(f"{uri}/ed25519-key", other_private))
    assert response.status_code == 401
    assert "does not list the key" in response.json()["error"]
    assert await follows(fedi) == 0


async def test_a_signature_by_another_ed25519_key_is_refused(
    fedi: InProcess, remote: KeyDocuments
) -> None:
    uri = remote.actors["fay"].uri
    forged = SigningKey(f"{uri}#ed25519-key", integrity.generate_ed25519_keypair()[0])
    response = await send_follow(fedi, remote, forged)
    assert response.status_code == 401
    assert "does not verify" in response.json()["error"]
    assert await follows(fedi) == 0


async def test_fedi_serves_its_key_documents(fedi: InProcess) -> None:
    response = await fedi.http.get(f"{GROUP}/ed25519-key")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/activity+json")
    document = response.json()
    assert (document["id"], document["type"], document["owner"]) == (
        f"{GROUP}/ed25519-key", "CryptographicKey", GROUP)
    async with fedi.services.sessionmaker() as session:
        group = (await session.execute(select(Actor).where(Actor.uri == GROUP))).scalar_one()
    assert group.assertion_public_key
    assert is_multikey(document["publicKeyPem"], group.assertion_public_key)
    assert (await fedi.http.get(f"{BASE_URL}/groups/nobody/ed25519-key")).status_code == 404
    instance = await fedi.http.get(f"{BASE_URL}/actor/ed25519-key")
    assert instance.status_code == 200
    assert instance.json()["owner"] == f"{BASE_URL}/actor"
