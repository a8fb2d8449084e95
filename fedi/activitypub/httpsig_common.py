"""Types, request helpers and signature primitives shared by both HTTP signature schemes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from fedi.activitypub.httpsig_sfv import Item
from fedi.errors import SignatureError

Scheme = Literal["cavage", "rfc9421"]

# The signature primitives; the names are RFC 9421's.
RSA_V1_5_SHA256 = "rsa-v1_5-sha256"
RSA_PSS_SHA512 = "rsa-pss-sha512"
ED25519 = "ed25519"

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class SignatureParams:
    """What a request's signature claims, learned before the key is fetched."""

    scheme: Scheme
    key_id: str
    algorithm: str | None
    covered: tuple[str, ...]  # lowercase header names / derived components, in signed order
    created: int | None
    expires: int | None
    signature: bytes = field(default=b"", repr=False)
    # RFC 9421 only: the label, the Signature-Input member exactly as received (it is signed
    # verbatim as @signature-params), and the component identifiers with their parameters.
    label: str | None = None
    signature_params: str = ""
    components: tuple[Item, ...] = ()


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lowercase names; names that differ only in case are combined as HTTP combines lines."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]}, {value}" if key in lowered else value
    return lowered


def url_authority(url: str) -> str:
    """host[:port] of an absolute URL, lowercase, default port omitted."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or port == _DEFAULT_PORTS.get(parts.scheme.lower()):
        return host
    return f"{host}:{port}"


def normalize_authority(authority: str, scheme: str) -> str:
    authority = authority.strip().lower()
    default = _DEFAULT_PORTS.get(scheme.lower())
    if default is not None and authority.endswith(f":{default}") and not authority.endswith("]"):
        return authority[: -len(f":{default}")]
    return authority


def request_host(url: str, headers: Mapping[str, str]) -> str:
    """The `host` value a signature base uses: the Host header, else the URL's authority."""
    host = headers.get("host", "").strip()
    return host.lower() if host else url_authority(url)


def request_authority(url: str, headers: Mapping[str, str]) -> str:
    """RFC 9421 `@authority`: like `host`, but normalized (default port omitted)."""
    host = headers.get("host", "").strip()
    if not host:
        return url_authority(url)
    return normalize_authority(host, urlsplit(url).scheme)


def path_and_query(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.path or "/", parts.query


def header_value(headers: Mapping[str, str], name: str) -> str:
    """A covered header's value, trimmed; `headers` must already be lowercased."""
    value = headers.get(name)
    if value is None:
        raise SignatureError(f"the signature covers the {name} header, but the request has none")
    return value.strip()


def key_kind(key: PublicKeyTypes | PrivateKeyTypes) -> Literal["RSA", "Ed25519"]:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    raise SignatureError(f"unsupported key type {type(key).__name__}; need RSA or Ed25519")


# Algorithm names a signature may claim, and the primitive each means for each key type.
_ALGORITHMS: dict[str, dict[str, str]] = {
    "rsa-sha256": {"RSA": RSA_V1_5_SHA256},
    "hs2019": {"RSA": RSA_V1_5_SHA256, "Ed25519": ED25519},
    RSA_V1_5_SHA256: {"RSA": RSA_V1_5_SHA256},
    ED25519: {"Ed25519": ED25519},
}
_RFC9421_ONLY: dict[str, dict[str, str]] = {RSA_PSS_SHA512: {"RSA": RSA_PSS_SHA512}}


def resolve_primitives(
    scheme: Scheme, algorithm: str | None, key: PublicKeyTypes
) -> tuple[str, ...]:
    """The primitives to try for a claimed algorithm; refuses unknown or mismatched ones."""
    kind = key_kind(key)
    if algorithm is None:
        if kind == "Ed25519":
            return (ED25519,)
        # RFC 9421 lets `alg` be left out; its own RSA examples are then PSS.
        return (RSA_V1_5_SHA256, RSA_PSS_SHA512) if scheme == "rfc9421" else (RSA_V1_5_SHA256,)
    table = _ALGORITHMS | _RFC9421_ONLY if scheme == "rfc9421" else _ALGORITHMS
    by_kind = table.get(algorithm.lower())
    if by_kind is None:
        raise SignatureError(f"unsupported algorithm {algorithm}")
    primitive = by_kind.get(kind)
    if primitive is None:
        raise SignatureError(f"algorithm {algorithm} does not match the {kind} key")
    return (primitive,)


def sign_bytes(key: PrivateKeyTypes, primitive: str, data: bytes) -> bytes:
    if primitive == RSA_V1_5_SHA256 and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if primitive == RSA_PSS_SHA512 and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, _pss(), hashes.SHA512())
    if primitive == ED25519 and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise SignatureError(f"cannot sign {primitive} with a {key_kind(key)} key")


def verify_bytes(key: PublicKeyTypes, primitive: str, data: bytes, signature: bytes) -> bool:
    try:
        if primitive == RSA_V1_5_SHA256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif primitive == RSA_PSS_SHA512 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, _pss(), hashes.SHA512())
        elif primitive == ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _pss() -> padding.PSS:
    # RFC 9421 §3.3.1: MGF1 with SHA-512 and a 64-byte salt.
    return padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
