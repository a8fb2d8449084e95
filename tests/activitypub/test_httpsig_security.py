"""Negative tests for the federation security checklist, items 5-8.

Each rejected request carries a genuine signature: where possible the test first shows that
the bare cryptographic check accepts it, so only the policy guard under test can refuse it.
"""

from __future__ import annotations

import dataclasses
from email.utils import formatdate

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fedi.activitypub import httpsig_cavage, httpsig_rfc9421
from fedi.activitypub.digest import content_digest_header, digest_header
from fedi.activitypub.httpsig import (
    Scheme,
    parse_signature,
    sign_request,
    verify_request,
    verify_signature_only,
)
from fedi.activitypub.keys import SigningKey, generate_rsa_keypair
from fedi.errors import SignatureError

NOW = 1_700_000_000
HOUR = 3600
URL = "https://groups.example/groups/g/inbox"
BODY = b'{"type": "Follow", "actor": "https://remote.example/users/alice"}'
CAVAGE_FULL = ["(request-target)", "host", "date", "digest"]
RFC_FULL = ["@method", "@target-uri", "@authority", "date", "content-digest"]
SCHEMES: list[Scheme] = ["cavage", "rfc9421"]


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("https://remote.example/users/alice#main-key", generate_rsa_keypair()[0])


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey("https://remote.example/users/mallory#main-key", generate_rsa_keypair()[0])


@pytest.fixture(scope="module")
def ed_key() -> SigningKey:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey("https://remote.example/users/bob#ed25519-key", pem.decode())


def public_pem(signing_key: SigningKey) -> str:
    private = signing_key.private_key
    assert isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def request_headers(date: float = NOW, body: bytes = BODY) -> dict[str, str]:
    return {
        "Host": "groups.example",
        "Date": formatdate(date, usegmt=True),
        "Content-Type": "application/activity+json",
        "Digest": digest_header(body),
        "Content-Digest": content_digest_header(body),
    }


def cavage_signed(
    signing_key: SigningKey,
    covered: list[str],
    *,
    headers: dict[str, str] | None = None,
    url: str = URL,
    algorithm: str | None = None,
    created: int | None = None,
    expires: int | None = None,
) -> dict[str, str]:
    headers = request_headers() if headers is None else headers
    signature = httpsig_cavage.sign(
        "POST",
        url,
        headers,
        covered,
        signing_key.private_key,
        signing_key.key_id,
        algorithm=algorithm,
        created=created,
        expires=expires,
    )
    return headers | {"Signature": signature}


def rfc_signed(
    signing_key: SigningKey,
    components: list[str],
    *,
    headers: dict[str, str] | None = None,
    url: str = URL,
    created: int | None = NOW,
    expires: int | None = None,
    alg: str | None = None,
) -> dict[str, str]:
    headers = request_headers() if headers is None else headers
    signature_input, signature = httpsig_rfc9421.sign(
        "POST",
        url,
        headers,
        components,
        signing_key.private_key,
        signing_key.key_id,
        created=created,
        expires=expires,
        alg=alg,
    )
    return headers | {"Signature-Input": signature_input, "Signature": signature}


def verify(
    headers: dict[str, str],
    signing_key: SigningKey,
    *,
    body: bytes | None = BODY,
    url: str = URL,
    now: float = NOW,
) -> None:
    verify_request(
        parse_signature(headers), "POST", url, headers, body, public_pem(signing_key), now=now
    )


def rejected_by_policy(
    headers: dict[str, str],
    signing_key: SigningKey,
    reason: str,
    *,
    body: bytes | None = BODY,
    now: float = NOW,
) -> None:
    """The signature itself is genuine, yet the policy refuses the request."""
    params = parse_signature(headers)
    verify_signature_only(params, "POST", URL, headers, public_pem(signing_key))
    with pytest.raises(SignatureError, match=reason):
        verify(headers, signing_key, body=body, now=now)


def test_baselines_verify(key: SigningKey) -> None:
    verify(cavage_signed(key, CAVAGE_FULL), key)
    verify(rfc_signed(key, RFC_FULL), key)


# --- item 5: keyId, signature, coverage, algorithms -----------------------------------------


def test_missing_key_id(key: SigningKey) -> None:
    headers = cavage_signed(key, CAVAGE_FULL)
    headers["Signature"] = headers["Signature"].replace(f'keyId="{key.key_id}",', "")
    with pytest.raises(SignatureError, match="the signature has no keyId"):
        parse_signature(headers)

    headers = rfc_signed(key, RFC_FULL)
    headers["Signature-Input"] = headers["Signature-Input"].replace(f';keyid="{key.key_id}"', "")
    with pytest.raises(SignatureError, match="the signature has no keyid parameter"):
        parse_signature(headers)

    params = parse_signature(rfc_signed(key, RFC_FULL))
    with pytest.raises(SignatureError, match="no keyId"):
        verify_request(
            dataclasses.replace(params, key_id=""),
            "POST",
            URL,
            request_headers(),
            BODY,
            public_pem(key),
            now=NOW,
        )


def test_missing_signature(key: SigningKey) -> None:
    with pytest.raises(SignatureError, match="not signed"):
        parse_signature(request_headers())

    headers = cavage_signed(key, CAVAGE_FULL)
    headers["Signature"] = headers["Signature"].split(',signature="')[0]
    with pytest.raises(SignatureError, match="no signature value"):
        parse_signature(headers)

    headers = rfc_signed(key, RFC_FULL)
    del headers["Signature"]
    with pytest.raises(SignatureError, match="Signature-Input but no Signature"):
        parse_signature(headers)

    headers = rfc_signed(key, RFC_FULL)
    headers["Signature"] = headers["Signature"].replace("sig1=", "other=")
    with pytest.raises(SignatureError, match="no Signature member matches"):
        parse_signature(headers)

    params = parse_signature(rfc_signed(key, RFC_FULL))
    with pytest.raises(SignatureError, match="no signature value"):
        verify_request(
            dataclasses.replace(params, signature=b""),
            "POST",
            URL,
            request_headers(),
            BODY,
            public_pem(key),
            now=NOW,
        )


@pytest.mark.parametrize(
    ("scheme", "covered", "reason"),
    [
        ("cavage", ["host", "date", "digest"], r"does not cover \(request-target\)"),
        (
            "rfc9421",
            ["@target-uri", "@authority", "date", "content-digest"],
            "does not cover @method",
        ),
        (
            "rfc9421",
            ["@method", "@authority", "date", "content-digest"],
            "neither @target-uri nor both @path and @authority",
        ),
        (
            "rfc9421",
            ["@method", "@path", "host", "date", "content-digest"],
            "neither @target-uri nor both @path and @authority",
        ),
    ],
)
def test_request_target_not_covered(
    scheme: Scheme, covered: list[str], reason: str, key: SigningKey
) -> None:
    signer = cavage_signed if scheme == "cavage" else rfc_signed
    rejected_by_policy(signer(key, covered), key, reason)


def test_path_with_authority_is_enough(key: SigningKey) -> None:
    verify(
        rfc_signed(key, ["@method", "@path", "@query", "@authority", "date", "content-digest"]), key
    )


@pytest.mark.parametrize(
    ("scheme", "covered", "reason"),
    [
        ("cavage", ["(request-target)", "date", "digest"], "does not cover the host header"),
        (
            "rfc9421",
            ["@method", "@target-uri", "date", "content-digest"],
            "neither @authority nor the host header",
        ),
    ],
)
def test_host_not_covered(scheme: Scheme, covered: list[str], reason: str, key: SigningKey) -> None:
    signer = cavage_signed if scheme == "cavage" else rfc_signed
    rejected_by_policy(signer(key, covered), key, reason)


def test_host_header_instead_of_authority_is_enough(key: SigningKey) -> None:
    verify(rfc_signed(key, ["@method", "@target-uri", "host", "date", "content-digest"]), key)


def test_date_not_covered(key: SigningKey) -> None:
    rejected_by_policy(
        cavage_signed(key, ["(request-target)", "host", "digest"]),
        key,
        r"neither the date header nor \(created\)",
    )
    rejected_by_policy(
        rfc_signed(key, ["@method", "@target-uri", "@authority", "content-digest"], created=None),
        key,
        "neither the date header nor a created time",
    )


def test_created_instead_of_date_is_enough(key: SigningKey) -> None:
    verify(
        cavage_signed(key, ["(request-target)", "(created)", "host", "digest"], created=NOW), key
    )
    verify(rfc_signed(key, ["@method", "@target-uri", "@authority", "content-digest"]), key)


@pytest.mark.parametrize("body", [BODY, b""])
def test_digest_not_covered_on_post(body: bytes, key: SigningKey) -> None:
    headers = request_headers(body=body)
    rejected_by_policy(
        cavage_signed(key, ["(request-target)", "host", "date"], headers=headers),
        key,
        "does not cover the digest header",
        body=body,
    )
    rejected_by_policy(
        rfc_signed(key, ["@method", "@target-uri", "@authority", "date"], headers=headers),
        key,
        "does not cover the digest header",
        body=body,
    )


def test_rfc9421_may_cover_the_legacy_digest_header(key: SigningKey) -> None:
    verify(rfc_signed(key, ["@method", "@target-uri", "@authority", "date", "digest"]), key)


@pytest.mark.parametrize("algorithm", ["rsa-sha1", "hmac-sha256", "rsa-sha512", "rsa-pss-sha512"])
def test_unsupported_cavage_algorithm(algorithm: str, key: SigningKey) -> None:
    headers = cavage_signed(key, CAVAGE_FULL, algorithm=algorithm)
    params = parse_signature(headers)
    # The bytes are a genuine rsa-sha256 signature; only the claimed name is refused.
    honest = dataclasses.replace(params, algorithm=None)
    verify_request(honest, "POST", URL, headers, BODY, public_pem(key), now=NOW)
    with pytest.raises(SignatureError, match=f"unsupported algorithm {algorithm}"):
        verify(headers, key)


@pytest.mark.parametrize("alg", ["rsa-sha1", "hmac-sha256", "ecdsa-p256-sha256"])
def test_unsupported_rfc9421_algorithm(alg: str, key: SigningKey) -> None:
    headers = rfc_signed(key, RFC_FULL, alg=alg)
    params = parse_signature(headers)
    honest = dataclasses.replace(params, algorithm=None)
    verify_request(honest, "POST", URL, headers, BODY, public_pem(key), now=NOW)
    with pytest.raises(SignatureError, match=f"unsupported algorithm {alg}"):
        verify(headers, key)


@pytest.mark.parametrize(
    ("scheme", "signer", "claimed", "kind"),
    [
        ("cavage", "ed", "rsa-sha256", "Ed25519"),
        ("cavage", "rsa", "ed25519", "RSA"),
        ("rfc9421", "rsa", "ed25519", "RSA"),
        ("rfc9421", "ed", "rsa-v1_5-sha256", "Ed25519"),
        ("rfc9421", "ed", "rsa-pss-sha512", "Ed25519"),
    ],
)
def test_algorithm_key_type_mismatch(
    scheme: Scheme, signer: str, claimed: str, kind: str, key: SigningKey, ed_key: SigningKey
) -> None:
    signing_key = key if signer == "rsa" else ed_key
    if scheme == "cavage":
        headers = cavage_signed(signing_key, CAVAGE_FULL, algorithm=claimed)
    else:
        headers = rfc_signed(signing_key, RFC_FULL, alg=claimed)
    params = parse_signature(headers)
    honest = dataclasses.replace(params, algorithm=None)
    verify_request(honest, "POST", URL, headers, BODY, public_pem(signing_key), now=NOW)
    with pytest.raises(SignatureError, match=f"algorithm {claimed} does not match the {kind} key"):
        verify(headers, signing_key)


def test_hs2019_with_either_key_type(key: SigningKey, ed_key: SigningKey) -> None:
    verify(cavage_signed(key, CAVAGE_FULL, algorithm="hs2019"), key)
    verify(cavage_signed(ed_key, CAVAGE_FULL, algorithm="hs2019"), ed_key)


def test_unsupported_key_type(key: SigningKey) -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    headers = cavage_signed(key, CAVAGE_FULL)
    with pytest.raises(SignatureError, match="unsupported key type"):
        verify_request(parse_signature(headers), "POST", URL, headers, BODY, ec_pem, now=NOW)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signature_by_a_different_key(
    scheme: Scheme, key: SigningKey, other_key: SigningKey
) -> None:
    headers = sign_request(scheme, "POST", URL, {}, BODY, other_key, now=NOW)
    with pytest.raises(SignatureError, match="does not verify with the key"):
        verify(headers, key)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_changed_covered_header(scheme: Scheme, key: SigningKey) -> None:
    headers = sign_request(scheme, "POST", URL, {}, BODY, key, now=NOW)
    headers["Date"] = formatdate(NOW + 60, usegmt=True)
    with pytest.raises(SignatureError, match="does not verify"):
        verify(headers, key)


# --- item 6: digest -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "reason"),
    [
        ("cavage", "the Digest SHA-256 does not match the body"),
        ("rfc9421", "the Content-Digest SHA-256 does not match the body"),
    ],
)
def test_body_tampered_after_signing(scheme: Scheme, reason: str, key: SigningKey) -> None:
    headers = sign_request(scheme, "POST", URL, {}, BODY, key, now=NOW)
    tampered = BODY.replace(b"alice", b"mallory")
    rejected_by_policy(headers, key, reason, body=tampered)


def test_lowercase_digest_algorithm_accepted(key: SigningKey) -> None:
    headers = request_headers()
    del headers["Content-Digest"]
    headers["Digest"] = headers["Digest"].replace("SHA-256=", "sha-256=")  # as bovine sends it
    verify(cavage_signed(key, CAVAGE_FULL, headers=headers), key)


# --- item 7: replay window ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_date_two_hours_old(scheme: Scheme, key: SigningKey) -> None:
    headers = sign_request(scheme, "POST", URL, {}, BODY, key, now=NOW - 2 * HOUR)
    rejected_by_policy(headers, key, "^Date is 2h in the past, outside the 1h window$")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_date_two_hours_ahead(scheme: Scheme, key: SigningKey) -> None:
    headers = sign_request(scheme, "POST", URL, {}, BODY, key, now=NOW + 2 * HOUR)
    rejected_by_policy(headers, key, "Date is 2h in the future, outside the 1h window")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_date_within_the_window(scheme: Scheme, key: SigningKey) -> None:
    for skew in (-59 * 60, 59 * 60):
        verify(sign_request(scheme, "POST", URL, {}, BODY, key, now=NOW + skew), key)


def test_created_in_the_future(key: SigningKey) -> None:
    # The Date header is fresh; only `created` is out of the window.
    rejected_by_policy(
        rfc_signed(key, RFC_FULL, created=NOW + 2 * HOUR),
        key,
        "created is 2h in the future, outside the 1h window",
    )
    rejected_by_policy(
        cavage_signed(key, [*CAVAGE_FULL, "(created)"], created=NOW + 2 * HOUR),
        key,
        "created is 2h in the future, outside the 1h window",
    )


def test_created_too_old(key: SigningKey) -> None:
    rejected_by_policy(
        rfc_signed(key, RFC_FULL, created=NOW - 2 * HOUR), key, "created is 2h in the past"
    )


def test_expires_in_the_past(key: SigningKey) -> None:
    rejected_by_policy(
        rfc_signed(key, RFC_FULL, created=NOW - 600, expires=NOW - 60),
        key,
        "the signature expired 1m ago",
    )
    rejected_by_policy(
        cavage_signed(
            key, [*CAVAGE_FULL, "(created)", "(expires)"], created=NOW - 600, expires=NOW - 60
        ),
        key,
        "the signature expired 1m ago",
    )


def test_lifetime_over_twelve_hours(key: SigningKey) -> None:
    rejected_by_policy(
        rfc_signed(key, RFC_FULL, created=NOW, expires=NOW + 13 * HOUR),
        key,
        "valid for 13h, longer than the 12h maximum",
    )
    rejected_by_policy(
        cavage_signed(
            key, [*CAVAGE_FULL, "(created)", "(expires)"], created=NOW, expires=NOW + 13 * HOUR
        ),
        key,
        "valid for 13h, longer than the 12h maximum",
    )


def test_lifetime_of_twelve_hours_is_fine(key: SigningKey) -> None:
    verify(rfc_signed(key, RFC_FULL, created=NOW, expires=NOW + 12 * HOUR), key)


# --- item 8 and the request's own host ----------------------------------------------------


def test_request_target_without_query_accepted(key: SigningKey) -> None:
    # Some servers sign the path only; we try with the query string, then without.
    headers = cavage_signed(key, CAVAGE_FULL, url=URL)
    verify(headers, key, url=URL + "?page=2")
    verify(cavage_signed(key, CAVAGE_FULL, url=URL + "?page=2"), key, url=URL + "?page=2")


def test_request_target_fallback_still_checks_the_path(key: SigningKey) -> None:
    headers = cavage_signed(key, CAVAGE_FULL, url=URL)
    with pytest.raises(SignatureError, match="does not verify"):
        verify(headers, key, url="https://groups.example/groups/other/inbox?page=2")


def test_no_query_fallback_for_rfc9421(key: SigningKey) -> None:
    headers = rfc_signed(key, RFC_FULL, url=URL)
    with pytest.raises(SignatureError, match="does not verify"):
        verify(headers, key, url=URL + "?page=2")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("case", [str.lower, str.upper, str.swapcase])
def test_header_names_in_any_case(scheme: Scheme, case: object, key: SigningKey) -> None:
    assert callable(case)
    signed = sign_request(
        scheme, "POST", URL, {"Content-Type": "application/activity+json"}, BODY, key, now=NOW
    )
    verify({case(name): value for name, value in signed.items()}, key)


def test_authorization_signature_header(key: SigningKey) -> None:
    headers = cavage_signed(key, CAVAGE_FULL)
    headers["Authorization"] = "Signature " + headers.pop("Signature")
    verify(headers, key)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_host_comes_from_the_request(scheme: Scheme, key: SigningKey) -> None:
    headers = sign_request(scheme, "POST", URL, {}, BODY, key, now=NOW)
    with pytest.raises(SignatureError, match="does not verify"):
        verify(
            headers | {"Host": "elsewhere.example"},
            key,
            url="https://elsewhere.example/groups/g/inbox",
        )
    verify(headers | {"Host": "GROUPS.example"}, key)
    without_host = {name: value for name, value in headers.items() if name != "Host"}
    verify(without_host, key)
    with pytest.raises(SignatureError, match="does not verify"):
        verify(without_host, key, url="https://elsewhere.example/groups/g/inbox")


def test_host_header_wins_over_the_url_authority(key: SigningKey) -> None:
    # host / @authority are taken from the Host header when there is one, not from the URL.
    internal = "http://127.0.0.1:8000/groups/g/inbox"
    verify(cavage_signed(key, CAVAGE_FULL), key, url=internal)
    components = ["@method", "@path", "@authority", "date", "content-digest"]
    verify(rfc_signed(key, components), key, url=internal)
    verify(
        rfc_signed(key, ["@method", "@path", "@authority", "host", "date", "content-digest"]),
        key,
        url=internal,
    )


# --- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Signature": "this is not a signature header"},
        {"Signature": 'keyId="k",keyId="k2",signature="AAAA"'},
        {"Signature": 'keyId="k",signature="not base64!"'},
        {"Signature-Input": "sig1=(", "Signature": "sig1=:AAAA:"},
        {"Signature-Input": 'sig1=("@method");keyid="k"', "Signature": "sig1=AAAA"},
        {"Signature-Input": 'sig1="@method";keyid="k"', "Signature": "sig1=:AAAA:"},
        {"Signature-Input": 'sig1=("@method" "@method");keyid="k"', "Signature": "sig1=:AAAA:"},
        {"Signature-Input": 'sig1=("@Method");keyid="k"', "Signature": "sig1=:AAAA:"},
        {"Signature-Input": 'sig1=("@method");keyid=k', "Signature": "sig1=:AAAA:"},
        {"Signature-Input": 'sig1=("@method");keyid="k";created="1"', "Signature": "sig1=:AAAA:"},
    ],
)
def test_malformed_signature_headers(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        parse_signature(headers)


def test_unsupported_component_parameters_rejected(key: SigningKey) -> None:
    headers = rfc_signed(key, RFC_FULL)
    headers["Signature-Input"] = headers["Signature-Input"].replace('"date"', '"date";sf')
    with pytest.raises(SignatureError, match="unsupported parameter sf"):
        verify(headers, key)
