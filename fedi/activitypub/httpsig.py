"""HTTP signatures, both ways: draft-cavage (Mastodon) and RFC 9421 (Fedify).

Receiving: `parse_signature` learns the keyId before any key is fetched; `verify_request` then
enforces the federation security checklist (items 5-8): required coverage, digest, accepted
algorithms and the replay window, and only then checks the signature itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from fedi.activitypub import httpsig_cavage as cavage
from fedi.activitypub import httpsig_rfc9421 as rfc9421
from fedi.activitypub.digest import content_digest_header, digest_header, verify_body_digest
from fedi.activitypub.httpsig_common import (
    Scheme,
    SignatureParams,
    lower_headers,
    path_and_query,
    resolve_primitives,
    url_authority,
    verify_bytes,
)
from fedi.activitypub.keys import SigningKey, load_public_key
from fedi.errors import SignatureError

__all__ = [
    "MAX_LIFETIME",
    "REPLAY_WINDOW",
    "Scheme",
    "SignatureParams",
    "parse_signature",
    "sign_request",
    "signature_base",
    "verify_request",
    "verify_signature_only",
]

REPLAY_WINDOW = 3600  # seconds a Date or created may differ from now
MAX_LIFETIME = 12 * 3600  # longest expires - created we accept

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@lru_cache(maxsize=2)
def _date_header(second: int) -> str:
    """The Date header for a second: a fan-out signs hundreds of requests in each."""
    return formatdate(second, usegmt=True)


def sign_request(
    scheme: Scheme,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    key: SigningKey,
    now: float | None = None,
) -> dict[str, str]:
    """Return a new dict: `headers` plus Host, Date, a body digest and the signature headers.

    RFC 9421 signatures use `key.ed25519` when it is set (`alg="ed25519"`, keyid the Ed25519
    key's); draft-cavage ones always use `key` itself.
    """
    now = time.time() if now is None else now
    signed = dict(headers)
    present = {name.lower() for name in signed}
    if "host" not in present:
        signed["Host"] = url_authority(url)
    if "date" not in present:
        signed["Date"] = _date_header(int(now))
    if scheme == "cavage":
        covered = ["(request-target)", "host", "date"]
        if body is not None:
            _replace(signed, "Digest", digest_header(body))
            covered.append("digest")
            if "content-type" in present:
                covered.append("content-type")
        value = cavage.sign(method, url, signed, covered, key.private_key, key.key_id)
        _replace(signed, "Signature", value)
    else:
        key = key.ed25519 or key
        components = ["@method", "@target-uri", "@authority", "date"]
        if body is not None:
            _replace(signed, "Content-Digest", content_digest_header(body))
            components.append("content-digest")
        signature_input, signature = rfc9421.sign(
            method, url, signed, components, key.private_key, key.key_id, created=int(now)
        )
        _replace(signed, "Signature-Input", signature_input)
        _replace(signed, "Signature", signature)
    return signed


def _replace(headers: dict[str, str], name: str, value: str) -> None:
    for existing in [k for k in headers if k.lower() == name.lower()]:
        del headers[existing]
    headers[name] = value


def parse_signature(headers: Mapping[str, str]) -> SignatureParams:
    """Which key signed this request, and how: Signature-Input means RFC 9421, otherwise a
    cavage `Signature` (or `Authorization: Signature ...`) header."""
    lowered = lower_headers(headers)
    if "signature-input" in lowered:
        if "signature" not in lowered:
            raise SignatureError("the request has Signature-Input but no Signature header")
        return rfc9421.parse(lowered["signature-input"], lowered["signature"])
    value = lowered.get("signature")
    if value is None:
        auth_scheme, _, rest = lowered.get("authorization", "").strip().partition(" ")
        if auth_scheme.lower() == "signature":
            value = rest
    if value is None or not value.strip():
        raise SignatureError("the request is not signed: no Signature header")
    return cavage.parse(value)


def verify_request(
    params: SignatureParams,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    public_key: PublicKeyTypes | str,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless the request is signed by `public_key` and meets the policy.

    `url` is the absolute URL as the server sees it (scheme://host[:port]/path?query).
    """
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    lowered = lower_headers(headers)
    now = time.time() if now is None else now
    if not params.key_id:
        raise SignatureError("the signature has no keyId")
    if not params.signature:
        raise SignatureError("the signature has no signature value")
    has_body = bool(body) or method.upper() in _BODY_METHODS
    digest_covered = _check_coverage(params, has_body)
    primitives = resolve_primitives(params.scheme, params.algorithm, key)
    _check_times(params, lowered, now)
    if digest_covered:
        verify_body_digest(lowered, body or b"")
    _verify_signature(params, method, url, lowered, key, primitives)


def verify_signature_only(
    params: SignatureParams,
    method: str,
    url: str,
    headers: Mapping[str, str],
    public_key: PublicKeyTypes | str,
) -> None:
    """Check only the cryptographic signature, without coverage, digest or time rules.

    For published test vectors that predate those rules; requests must use `verify_request`.
    """
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    primitives = resolve_primitives(params.scheme, params.algorithm, key)
    _verify_signature(params, method, url, lower_headers(headers), key, primitives)


def signature_base(
    params: SignatureParams,
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    with_query: bool = True,
) -> str:
    """The exact text the signature signs (cavage signing string or RFC 9421 signature base)."""
    if params.scheme == "cavage":
        return cavage.signing_string(
            method,
            url,
            headers,
            params.covered,
            params.created,
            params.expires,
            with_query=with_query,
        )
    return rfc9421.signature_base(method, url, headers, params.components, params.signature_params)


def _verify_signature(
    params: SignatureParams,
    method: str,
    url: str,
    headers: Mapping[str, str],
    key: PublicKeyTypes,
    primitives: tuple[str, ...],
) -> None:
    bases = [signature_base(params, method, url, headers)]
    # Checklist item 8: some servers sign (request-target) without the query string.
    query = path_and_query(url)[1]
    if params.scheme == "cavage" and "(request-target)" in params.covered and query:
        bases.append(signature_base(params, method, url, headers, with_query=False))
    for base in bases:
        data = base.encode("utf-8")
        if any(verify_bytes(key, p, data, params.signature) for p in primitives):
            return
    raise SignatureError(
        f"the signature does not verify with the key {params.key_id} "
        "(wrong key, or the signed parts of the request were changed)"
    )


def _check_coverage(params: SignatureParams, has_body: bool) -> bool:
    """Checklist item 5: refuse signatures that leave the request's identity unsigned.
    Returns whether a digest header is covered."""
    covered = set(params.covered)
    if params.scheme == "cavage":
        if "(request-target)" not in covered:
            raise SignatureError("the signature does not cover (request-target)")
        if "host" not in covered:
            raise SignatureError("the signature does not cover the host header")
        if "date" not in covered and "(created)" not in covered:
            raise SignatureError("the signature covers neither the date header nor (created)")
        digest_covered = "digest" in covered
    else:
        if "@method" not in covered:
            raise SignatureError("the signature does not cover @method")
        if "@target-uri" not in covered and not {"@path", "@authority"} <= covered:
            raise SignatureError(
                "the signature covers neither @target-uri nor both @path and @authority"
            )
        if "@authority" not in covered and "host" not in covered:
            raise SignatureError("the signature covers neither @authority nor the host header")
        if "date" not in covered and params.created is None:
            raise SignatureError("the signature covers neither the date header nor a created time")
        digest_covered = bool(covered & {"content-digest", "digest"})
    if has_body and not digest_covered:
        raise SignatureError("the signature does not cover the digest header")
    return digest_covered


def _check_times(params: SignatureParams, headers: Mapping[str, str], now: float) -> None:
    """Checklist item 7: the replay window and signature lifetime."""
    start: float | None = params.created
    if "date" in params.covered:
        date = _http_date(headers.get("date"))
        _within_window("Date", date, now)
        start = date if start is None else start
    if params.created is not None:
        _within_window("created", params.created, now)
    if params.expires is not None:
        if params.expires < now:
            raise SignatureError(f"the signature expired {_duration(now - params.expires)} ago")
        lifetime = params.expires - (now if start is None else start)
        if lifetime > MAX_LIFETIME:
            raise SignatureError(
                f"the signature is valid for {_duration(lifetime)}, "
                f"longer than the {_duration(MAX_LIFETIME)} maximum"
            )


def _http_date(value: str | None) -> float:
    if value is None:
        raise SignatureError("the signature covers the date header, but the request has none")
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"the Date header {value!r} is not an HTTP date") from exc
    # HTTP dates are always GMT, even when a sender leaves the zone out.
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _within_window(what: str, when: float, now: float) -> None:
    if when - now > REPLAY_WINDOW:
        raise SignatureError(
            f"{what} is {_duration(when - now)} in the future, "
            f"outside the {_duration(REPLAY_WINDOW)} window"
        )
    if now - when > REPLAY_WINDOW:
        raise SignatureError(
            f"{what} is {_duration(now - when)} in the past, "
            f"outside the {_duration(REPLAY_WINDOW)} window"
        )


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}".removesuffix(".0") + "h"
    if seconds >= 60:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds)}s"
