"""Body digests: the `Digest` header cavage signatures cover, and RFC 9530 `Content-Digest`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from functools import lru_cache

from fedi.activitypub.httpsig_common import lower_headers
from fedi.activitypub.httpsig_sfv import Item, StructuredFieldError, parse_dictionary
from fedi.errors import SignatureError

__all__ = ["content_digest_header", "digest_header", "verify_body_digest"]

_HASHES: dict[str, Callable[[bytes], bytes]] = {
    "sha-256": lambda body: hashlib.sha256(body).digest(),
    "sha-512": lambda body: hashlib.sha512(body).digest(),
}


# A fan-out signs one body for every member server: its digest is taken once. (A bytes
# object keeps its hash, and a hit on the same object compares by identity first. Eight
# bodies at most are kept: a few activities go out at once.)
@lru_cache(maxsize=8)
def digest_header(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


@lru_cache(maxsize=8)
def content_digest_header(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def verify_body_digest(headers: Mapping[str, str], body: bytes) -> None:
    """Check every `Digest` / `Content-Digest` value we understand against the raw body.

    Unknown algorithms are skipped, but at least one SHA-256 or SHA-512 value must be present,
    and every one present must match.
    """
    lowered = lower_headers(headers)  # repeated lines are combined, so every value is checked
    digest = lowered.get("digest")
    content_digest = lowered.get("content-digest")
    if digest is None and content_digest is None:
        raise SignatureError("missing digest")
    if digest is not None:
        _check_digest(digest, body)
    if content_digest is not None:
        _check_content_digest(content_digest, body)


def _check_digest(header: str, body: bytes) -> None:
    checked = False
    for part in header.split(","):
        name, _, encoded = part.strip().partition("=")
        algorithm = name.strip().lower()
        if algorithm not in _HASHES:
            continue
        try:
            claimed = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SignatureError(f"the Digest {name.strip()} value is not valid base64") from exc
        _compare("Digest", algorithm, claimed, body)
        checked = True
    if not checked:
        raise SignatureError("the Digest header has no SHA-256 or SHA-512 value")


def _check_content_digest(header: str, body: bytes) -> None:
    try:
        members = parse_dictionary(header)
    except StructuredFieldError as exc:
        raise SignatureError(f"the Content-Digest header is malformed: {exc}") from exc
    checked = False
    for algorithm, member in members.items():
        if algorithm not in _HASHES:
            continue
        if not isinstance(member.value, Item) or not isinstance(member.value.value, bytes):
            raise SignatureError(f"the Content-Digest {algorithm} value is not a byte sequence")
        _compare("Content-Digest", algorithm, member.value.value, body)
        checked = True
    if not checked:
        raise SignatureError("the Content-Digest header has no sha-256 or sha-512 value")


def _compare(header: str, algorithm: str, claimed: bytes, body: bytes) -> None:
    if not hmac.compare_digest(claimed, _HASHES[algorithm](body)):
        raise SignatureError(f"the {header} {algorithm.upper()} does not match the body")
