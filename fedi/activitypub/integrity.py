"""Object integrity proofs (FEP-8b32): Data Integrity `eddsa-jcs-2022` over Ed25519 keys.

An author's server signs the activity itself, so a relay (a group, FEP-1b12) can pass it on
and the receiver can check the author's own signature without fetching the post from its
origin. Keys are published as FEP-521a `assertionMethod` Multikeys. Pure: no I/O.

The algorithm (W3C vc-di-eddsa, eddsa-jcs-2022):
    hash = SHA-256(JCS(proof options, with the document's @context)) ‖ SHA-256(JCS(document))
    proofValue = multibase base58btc of the Ed25519 signature over hash
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedi.errors import SignatureError

CRYPTOSUITE = "eddsa-jcs-2022"
DATA_INTEGRITY_CONTEXT = "https://w3id.org/security/data-integrity/v1"
MULTIKEY_CONTEXT = "https://w3id.org/security/multikey/v1"
DID_CONTEXT = "https://www.w3.org/ns/did/v1"  # defines assertionMethod for JSON-LD readers
_ED25519_PUB_PREFIX = b"\xed\x01"  # multicodec ed25519-pub, varint
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rest = divmod(number, 58)
        out = _B58[rest] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _b58decode(text: str) -> bytes:
    if len(text) > 200:  # far beyond any key or signature: refuse before the big-int work
        raise SignatureError("multibase value too long")
    number = 0
    for char in text:
        if char not in _B58_INDEX:
            raise SignatureError("multibase value is not base58btc")
        number = number * 58 + _B58_INDEX[char]
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def generate_ed25519_keypair() -> tuple[str, str]:
    """(private PEM in PKCS#8, public key as a Multikey publicKeyMultibase)."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return private_pem, public_multibase(key.public_key())


def public_multibase(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "z" + _b58encode(_ED25519_PUB_PREFIX + raw)


def load_multikey(multibase: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a Multikey's publicKeyMultibase; SignatureError otherwise."""
    if not isinstance(multibase, str) or not multibase.startswith("z"):
        raise SignatureError("publicKeyMultibase is not base58btc")
    raw = _b58decode(multibase[1:])
    if len(raw) != 34 or not raw.startswith(_ED25519_PUB_PREFIX):
        raise SignatureError("publicKeyMultibase is not an Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(raw[2:])


def multikey(key_id: str, controller: str, multibase: str) -> dict[str, str]:
    """The FEP-521a entry of an actor's assertionMethod."""
    return {"id": key_id, "type": "Multikey", "controller": controller,
            "publicKeyMultibase": multibase}


def _hash(document: dict[str, Any], options: dict[str, Any]) -> bytes:
    try:
        return (hashlib.sha256(rfc8785.dumps(options)).digest()
                + hashlib.sha256(rfc8785.dumps(document)).digest())
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise SignatureError(f"the document cannot be canonicalised: {exc}") from None


def sign(
    document: dict[str, Any], private_pem: str, key_id: str, *, created: datetime | None = None
) -> dict[str, Any]:
    """The document with an assertionMethod proof by the key key_id."""
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError("integrity proofs are signed with Ed25519 keys")
    unsigned = {k: v for k, v in document.items() if k != "proof"}
    options: dict[str, Any] = {
        "type": "DataIntegrityProof",
        "cryptosuite": CRYPTOSUITE,
        "verificationMethod": key_id,
        "proofPurpose": "assertionMethod",
        "created": (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if "@context" in unsigned:
        options["@context"] = unsigned["@context"]
    signature = key.sign(_hash(unsigned, options))
    proof = {k: v for k, v in options.items() if k != "@context"}
    proof["proofValue"] = "z" + _b58encode(signature)
    return {**unsigned, "proof": proof}


def proof_key_id(document: Any) -> str | None:
    """The verificationMethod of the document's eddsa-jcs-2022 proof, if it has one."""
    proof = document.get("proof") if isinstance(document, dict) else None
    if isinstance(proof, list) and len(proof) == 1:
        proof = proof[0]
    if not isinstance(proof, dict) or proof.get("cryptosuite") != CRYPTOSUITE:
        return None
    method = proof.get("verificationMethod")
    return method if isinstance(method, str) else None


def verify(document: dict[str, Any], public_multibase_key: str) -> None:
    """Raise SignatureError unless the document's proof verifies with this key."""
    proof = document.get("proof")
    if isinstance(proof, list) and len(proof) == 1:
        proof = proof[0]
    if not isinstance(proof, dict):
        raise SignatureError("the document has no proof")
    if (proof.get("type") != "DataIntegrityProof" or proof.get("cryptosuite") != CRYPTOSUITE
            or proof.get("proofPurpose") != "assertionMethod"):
        raise SignatureError("the proof is not an eddsa-jcs-2022 assertion")
    value = proof.get("proofValue")
    if not isinstance(value, str) or not value.startswith("z"):
        raise SignatureError("the proof has no base58btc proofValue")
    unsigned = {k: v for k, v in document.items() if k != "proof"}
    options = {k: v for k, v in proof.items() if k != "proofValue"}
    if "@context" in unsigned:
        options["@context"] = unsigned["@context"]
    try:
        load_multikey(public_multibase_key).verify(_b58decode(value[1:]), _hash(unsigned, options))
    except InvalidSignature:
        raise SignatureError("the integrity proof does not verify") from None
