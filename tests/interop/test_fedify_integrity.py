"""Object integrity proofs (FEP-8b32, eddsa-jcs-2022) against Fedify's own implementation.

fedi signs the Create a member's server sends to a group, so the group can relay it to
servers that cannot fetch the post from its origin (a members-only post). These tests hold
fedi's proofs to a real third-party implementation both ways: Fedify verifies what fedi
signs (with fedi's actor document, FEP-521a Multikey, as the key source), and fedi verifies
what Fedify signs; a changed byte fails both.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from fedi.activitypub import integrity
from fedi.activitypub.actors import ActorView, actor_document
from fedi.activitypub.keys import generate_rsa_keypair
from fedi.errors import SignatureError
from fedi.groups.posting import proven
from fedi.store.models import Actor
from tests.interop.fedify import PEER_DIR, fedify_available, node_binary

pytestmark = pytest.mark.interop
ACTOR = "https://fedi.example/users/bob"


def fedify(request: dict[str, Any]) -> dict[str, Any]:
    available, why = fedify_available()
    assert available, why
    node = node_binary()
    assert node is not None
    done = subprocess.run([node, str(PEER_DIR / "proofs.mjs")], input=json.dumps(request),
                          capture_output=True, text=True, timeout=60, cwd=PEER_DIR, check=False)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def bob() -> tuple[Actor, dict[str, Any]]:
    _, public_pem = generate_rsa_keypair()
    signing_pem, multibase = integrity.generate_ed25519_keypair()
    actor = Actor(uri=ACTOR, assertion_key_id=f"{ACTOR}#ed25519-key",
                  assertion_public_key=multibase, assertion_private_pem=signing_pem)
    document = actor_document(ActorView(
        id=ACTOR, type="Person", username="bob", name=None, summary=None,
        inbox=f"{ACTOR}/inbox", outbox=f"{ACTOR}/outbox", followers=f"{ACTOR}/followers",
        following=None, shared_inbox="https://fedi.example/inbox", key_id=f"{ACTOR}#main-key",
        public_key_pem=public_pem, assertion_key_id=actor.assertion_key_id,
        assertion_public_key=multibase,
    ))
    return actor, document


def fedi_create() -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{ACTOR}/activities/1", "type": "Create", "actor": ACTOR,
        "to": ["https://fedi.example/groups/club/followers"],
        "object": {"id": "https://fedi.example/posts/1", "type": "Note", "attributedTo": ACTOR,
                   "content": "<p>Members only — naïve café ✓</p>",
                   "to": ["https://fedi.example/groups/club/followers"]},
    }


def test_fedify_verifies_what_fedi_signs() -> None:
    actor, document = bob()
    signed = proven(actor, fedi_create())
    assert signed["proof"]["cryptosuite"] == "eddsa-jcs-2022"
    assert fedify({"mode": "verify", "document": signed, "actors": {ACTOR: document}}) == {
        "verified": True}
    tampered = copy.deepcopy(signed)
    tampered["object"]["content"] = "<p>changed by the relay</p>"
    assert fedify({"mode": "verify", "document": tampered, "actors": {ACTOR: document}}) == {
        "verified": False}


def test_fedi_verifies_what_fedify_signs() -> None:
    made = fedify({"mode": "sign", "actor": "https://peer.example/users/f"})
    document, key = made["document"], made["publicKeyMultibase"]
    assert integrity.proof_key_id(document) == made["keyId"]
    integrity.verify(document, key)
    tampered = copy.deepcopy(document)
    tampered["object"]["content"] = "changed by the relay"
    with pytest.raises(SignatureError):
        integrity.verify(tampered, key)
    with pytest.raises(SignatureError):  # another key
        integrity.verify(document, integrity.generate_ed25519_keypair()[1])
