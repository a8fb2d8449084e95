"""The only place that knows the shape of local ids and URLs."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

USERS = "users"
GROUPS = "groups"
INSTANCE_ACTOR_PATH = "/actor"


def new_id() -> str:
    """Time-ordered, unguessable id for posts and activities (ms clock + 64 random bits)."""
    return f"{int(time.time() * 1000):011x}{os.urandom(8).hex()}"


@dataclass(frozen=True)
class Urls:
    base: str

    def user(self, name: str) -> str:
        return f"{self.base}/{USERS}/{name}"

    def group(self, name: str) -> str:
        return f"{self.base}/{GROUPS}/{name}"

    def actor(self, kind_path: str, name: str) -> str:
        return f"{self.base}/{kind_path}/{name}"

    @property
    def instance_actor(self) -> str:
        return f"{self.base}{INSTANCE_ACTOR_PATH}"

    @property
    def shared_inbox(self) -> str:
        return f"{self.base}/inbox"

    @staticmethod
    def inbox(actor_id: str) -> str:
        return f"{actor_id}/inbox"

    @staticmethod
    def outbox(actor_id: str) -> str:
        return f"{actor_id}/outbox"

    @staticmethod
    def followers(actor_id: str) -> str:
        return f"{actor_id}/followers"

    @staticmethod
    def following(actor_id: str) -> str:
        return f"{actor_id}/following"

    @staticmethod
    def moderators(actor_id: str) -> str:
        return f"{actor_id}/moderators"

    @staticmethod
    def key_id(actor_id: str) -> str:
        return f"{actor_id}#main-key"

    @staticmethod
    def assertion_key_id(actor_id: str) -> str:
        """The actor's Ed25519 Multikey for object integrity proofs (FEP-521a)."""
        return f"{actor_id}#ed25519-key"

    @staticmethod
    def ed25519_key_id(actor_id: str) -> str:
        """The same Ed25519 key as a CryptographicKey document of its own: the keyid of our
        RFC 9421 `ed25519` signatures. Fedify looks HTTP-signature keys up only as
        CryptographicKeys, and a second `publicKey` on the actor breaks other servers."""
        return f"{actor_id}/ed25519-key"

    def post(self, post_id: str) -> str:
        return f"{self.base}/posts/{post_id}"

    def activity(self, activity_id: str) -> str:
        return f"{self.base}/activities/{activity_id}"

    def is_local(self, uri: str) -> bool:
        parts = urlsplit(uri)
        return f"{parts.scheme}://{parts.netloc.lower()}" == self.base

