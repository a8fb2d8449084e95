"""Key generation and cached PEM loading for HTTP signatures."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from fedi.activitypub.integrity import load_multikey
from fedi.errors import ConfigError, SignatureError

__all__ = [
    "PrivateKeyTypes",
    "PublicKeyTypes",
    "SigningKey",
    "ed25519_public_pem",
    "generate_rsa_keypair",
    "is_multikey",
    "load_private_key",
    "load_public_key",
    "multikey_public_pem",
]


def generate_rsa_keypair(bits: int = 2048) -> tuple[str, str]:
    """Return (private PEM in PKCS#8, public PEM in SubjectPublicKeyInfo)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem


# Parsing a PEM costs tens of milliseconds (RSA private keys are checked on load), and the
# same few keys sign or verify every request, so each distinct PEM is parsed once.
@functools.lru_cache(maxsize=256)
def load_private_key(pem: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem.strip().encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"the private key PEM could not be loaded: {exc}") from exc


@functools.lru_cache(maxsize=4096)
def load_public_key(pem: str) -> PublicKeyTypes:
    """Load an SPKI ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY") PEM published by an actor."""
    try:
        return serialization.load_pem_public_key(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"the actor's public key PEM could not be loaded: {exc}") from exc


@dataclass(frozen=True)
class SigningKey:
    key_id: str  # e.g. "https://host/groups/g#main-key"
    private_pem: str = field(repr=False)  # never in logs or tracebacks
    # For peers that verify RFC 9421 `ed25519`: RFC 9421 signatures use this key instead
    # (draft-cavage ones, for everyone else, stay RSA).
    ed25519: SigningKey | None = None

    @property
    def private_key(self) -> PrivateKeyTypes:
        return load_private_key(self.private_pem)


def multikey_public_pem(multibase: str) -> str:
    """The SPKI PEM of an Ed25519 Multikey's publicKeyMultibase; SignatureError otherwise."""
    return _public_pem(load_multikey(multibase))


def is_multikey(pem: str, multibase: str) -> bool:
    """Whether a public key PEM holds the same Ed25519 key as a Multikey's publicKeyMultibase."""
    key = load_public_key(pem)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        return False
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    return key.public_bytes(*raw) == load_multikey(multibase).public_bytes(*raw)


def ed25519_public_pem(private_pem: str) -> str:
    """The SPKI PEM of the public half of an Ed25519 private key PEM."""
    key = load_private_key(private_pem)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError("the key is not an Ed25519 private key")
    return _public_pem(key.public_key())


def _public_pem(key: ed25519.Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
