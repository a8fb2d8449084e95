"""Build actor documents (pure: values in, JSON out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedi.activitypub.integrity import (
    DATA_INTEGRITY_CONTEXT,
    DID_CONTEXT,
    MULTIKEY_CONTEXT,
    multikey,
)
from fedi.activitypub.vocab import CONTEXT, SECURITY_CONTEXT


@dataclass(frozen=True)
class ActorView:
    id: str
    type: str  # Person | Group | Application
    username: str
    name: str | None
    summary: str | None
    inbox: str
    outbox: str
    followers: str
    following: str | None
    shared_inbox: str
    key_id: str
    public_key_pem: str
    url: str | None = None
    manually_approves_followers: bool = False
    moderators: str | None = None
    discoverable: bool = True
    featured: str | None = None
    rules: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    # FEP-521a: the Ed25519 key that signs object integrity proofs (FEP-8b32).
    assertion_key_id: str | None = None
    assertion_public_key: str | None = None
    icon: str | None = None  # avatar URL
    image: str | None = None  # header / banner URL


def actor_document(actor: ActorView) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "id": actor.id,
        "type": actor.type,
        "preferredUsername": actor.username,
        "name": actor.name or actor.username,
        "summary": actor.summary or "",
        "inbox": actor.inbox,
        "outbox": actor.outbox,
        "followers": actor.followers,
        "endpoints": {"sharedInbox": actor.shared_inbox},
        "manuallyApprovesFollowers": actor.manually_approves_followers,
        "discoverable": actor.discoverable,
        "publicKey": {
            "id": actor.key_id,
            "owner": actor.id,
            "publicKeyPem": actor.public_key_pem,
        },
    }
    if actor.assertion_key_id and actor.assertion_public_key:
        doc["@context"] = [*CONTEXT, DATA_INTEGRITY_CONTEXT, DID_CONTEXT, MULTIKEY_CONTEXT]
        doc["assertionMethod"] = [
            multikey(actor.assertion_key_id, actor.id, actor.assertion_public_key)
        ]
    if actor.following:
        doc["following"] = actor.following
    if actor.url:
        doc["url"] = actor.url
    if actor.icon:
        doc["icon"] = {"type": "Image", "url": actor.icon}
    if actor.image:
        doc["image"] = {"type": "Image", "url": actor.image}
    if actor.type == "Group":
        # Lemmy and FEP-1b12 readers find the moderators in attributedTo.
        if actor.moderators:
            doc["attributedTo"] = actor.moderators
            doc["moderators"] = actor.moderators
        doc["postingRestrictedToMods"] = False
        if actor.featured:
            doc["featured"] = actor.featured
        if actor.rules:
            doc["rules"] = [{"type": "Note", "content": rule} for rule in actor.rules]
        if actor.questions:
            doc["joinQuestions"] = list(actor.questions)
    return doc


def key_document(key_id: str, owner: str, public_key_pem: str) -> dict[str, Any]:
    """A key as a document of its own (what a keyid that is not the actor's names)."""
    return {
        "@context": SECURITY_CONTEXT,
        "id": key_id,
        "type": "CryptographicKey",
        "owner": owner,
        "publicKeyPem": public_key_pem,
    }
