"""Which key signs a delivery: RSA for everyone, Ed25519 for peers that should verify it.

A host whose actors publish an Ed25519 Multikey (FEP-521a `assertionMethod`, as Fedify and
fedi do) is sent the sender's two-key SigningKey: the client signs RFC 9421 `ed25519` with
the Ed25519 half first (keyid Urls.ed25519_key_id, a CryptographicKey document the peer can
fetch) and falls back to RSA draft-cavage if the host refuses it. Everyone else gets RSA only.
Whether a host's actors publish such a key is read from the actors table (remote actors are
stored when first met), once per host per ED25519_TTL, so claims stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.keys import SigningKey
from fedi.store.models import Actor
from fedi.urls import Urls

ED25519_TTL = 600.0  # seconds whether a host's actors publish Ed25519 keys is remembered
ED25519_HOSTS = 50_000  # remembered hosts at most (forgotten all at once past it)


@dataclass(frozen=True)
class Signer:
    """A local actor's keys: RSA alone, and RSA with its Ed25519 companion (if it has one)."""

    rsa: SigningKey
    ed25519: SigningKey | None
    ed25519_pem: str | None


class Signers:
    """Keys of local actors and what each host verifies, cached for one worker."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._actors: dict[int, Signer] = {}
        self._hosts: dict[str, tuple[bool, float]] = {}  # host -> (Ed25519, checked at)

    def of_actor(
        self, actor_id: int, uri: str, key_id: str, private_pem: str, ed25519_pem: str | None
    ) -> Signer:
        signer = self._actors.get(actor_id)
        if signer is None or signer.rsa.key_id != key_id or signer.ed25519_pem != ed25519_pem:
            rsa = SigningKey(key_id, private_pem)
            both = None
            if ed25519_pem is not None:
                companion = SigningKey(Urls.ed25519_key_id(uri), ed25519_pem)
                both = SigningKey(key_id, private_pem, ed25519=companion)
            signer = Signer(rsa, both, ed25519_pem)
            self._actors[actor_id] = signer
        return signer

    async def learn(self, session: AsyncSession, hosts: Iterable[str]) -> None:
        """Find out (again, past the TTL) which of these hosts have Ed25519 actors."""
        moment = self._monotonic()
        stale = [h for h in set(hosts)
                 if moment - self._hosts.get(h, (False, -ED25519_TTL))[1] >= ED25519_TTL]
        if not stale:
            return
        if len(self._hosts) + len(stale) > ED25519_HOSTS:
            self._hosts.clear()
        found = await session.execute(
            select(Actor.domain)
            .where(Actor.domain.in_(stale), Actor.assertion_public_key.is_not(None),
                   Actor.local.is_(False))
            .distinct()
        )
        ed25519 = set(found.scalars())
        for host in stale:
            self._hosts[host] = (host in ed25519, moment)

    def key(self, host: str, signer: Signer) -> SigningKey:
        """The key to sign a delivery to `host` with (as `learn` last found it)."""
        if signer.ed25519 is not None and self._hosts.get(host, (False, 0.0))[0]:
            return signer.ed25519
        return signer.rsa
