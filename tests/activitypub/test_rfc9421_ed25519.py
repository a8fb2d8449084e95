"""RFC 9421 `ed25519` signatures: the published test vector, and fedi's two-key signer.

The vector is RFC 9421 Appendix B.2.6 (the B.2 test request signed with test-key-ed25519 of
B.1.4), written out here literally. A delivery key may carry an Ed25519 companion: RFC 9421
signatures then use it (the keyid and `alg` say so), while draft-cavage ones stay RSA.
"""

from __future__ import annotations

import email.utils

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fedi.activitypub import httpsig_rfc9421, integrity
from fedi.activitypub.httpsig import (
    parse_signature,
    sign_request,
    signature_base,
    verify_request,
    verify_signature_only,
)
from fedi.activitypub.keys import (
    SigningKey,
    ed25519_public_pem,
    generate_rsa_keypair,
    is_multikey,
    load_private_key,
    load_public_key,
    multikey_public_pem,
)
from fedi.errors import SignatureError

# RFC 9421 B.1.4, test-key-ed25519.
TEST_KEY_PRIVATE = """-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
TEST_KEY_PUBLIC = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
"""

# RFC 9421 B.2, the test request.
URL = "https://example.com/foo?param=Value&Pet=dog"
HEADERS = {
    "Host": "example.com",
    "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "Content-Type": "application/json",
    "Content-Digest": "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7"
                      "BNNyealdVLvRwEmTHWXvJwew==:",
    "Content-Length": "18",
}
BODY = b'{"hello": "world"}'
CREATED = 1618884473

# RFC 9421 B.2.6.
COMPONENTS = ("date", "@method", "@path", "@authority", "content-type", "content-length")
SIGNATURE_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpB"
    "KRCw==:"
)
BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    '"content-length");created=1618884473;keyid="test-key-ed25519"'
)


def signed_vector() -> dict[str, str]:
    return {**HEADERS, "Signature-Input": SIGNATURE_INPUT, "Signature": SIGNATURE}


def test_the_test_keys_are_one_pair() -> None:
    assert ed25519_public_pem(TEST_KEY_PRIVATE).strip() == TEST_KEY_PUBLIC.strip()


def test_b26_signature_verifies_with_the_test_key() -> None:
    headers = signed_vector()
    params = parse_signature(headers)
    assert (params.scheme, params.key_id, params.label) == ("rfc9421", "test-key-ed25519",
                                                           "sig-b26")
    assert params.covered == COMPONENTS
    assert params.algorithm is None  # B.2.6 leaves alg out; the key's type decides
    assert signature_base(params, "POST", URL, headers) == BASE
    verify_signature_only(params, "POST", URL, headers, TEST_KEY_PUBLIC)


@pytest.mark.parametrize(
    ("change", "value"),
    [("Date", "Tue, 20 Apr 2021 02:07:56 GMT"), ("Content-Length", "19"),
     ("Host", "example.org")],
)
def test_b26_signature_fails_when_a_covered_part_changes(change: str, value: str) -> None:
    headers = signed_vector() | {change: value}
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature_only(parse_signature(headers), "POST", URL, headers, TEST_KEY_PUBLIC)


def test_b26_signature_fails_with_another_ed25519_key() -> None:
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    headers = signed_vector()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature_only(parse_signature(headers), "POST", URL, headers, other)


def test_b26_signature_claimed_for_an_rsa_key_is_refused() -> None:
    headers = signed_vector() | {"Signature-Input": SIGNATURE_INPUT + ';alg="ed25519"'}
    _, rsa_public = generate_rsa_keypair()
    with pytest.raises(SignatureError, match="does not match the RSA key"):
        verify_signature_only(parse_signature(headers), "POST", URL, headers, rsa_public)


def test_signing_the_b26_inputs_gives_the_published_signature() -> None:
    # Ed25519 is deterministic: the same key and base give the RFC's bytes exactly.
    signature_input, signature = httpsig_rfc9421.sign(
        "POST", URL, HEADERS, COMPONENTS, load_private_key(TEST_KEY_PRIVATE), "test-key-ed25519",
        created=CREATED, include_alg=False, label="sig-b26",
    )
    assert (signature_input, signature) == (SIGNATURE_INPUT, SIGNATURE)


# --- fedi's delivery key: RSA with an Ed25519 companion --------------------------------------

ACTOR = "https://fedi.example/groups/cats"
INBOX = "https://peer.example/inbox"
NOW = email.utils.parsedate_to_datetime("Wed, 02 Dec 2026 12:00:00 GMT").timestamp()


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, str, str]:
    """(the two-key SigningKey, RSA public PEM, Ed25519 publicKeyMultibase)."""
    rsa_private, rsa_public = generate_rsa_keypair()
    ed_private, multibase = integrity.generate_ed25519_keypair()
    key = SigningKey(f"{ACTOR}#main-key", rsa_private,
                     ed25519=SigningKey(f"{ACTOR}/ed25519-key", ed_private))
    return key, rsa_public, multibase


def test_rfc9421_signatures_use_the_ed25519_companion(keys: tuple[SigningKey, str, str]) -> None:
    key, rsa_public, multibase = keys
    headers = sign_request("rfc9421", "POST", INBOX, {"Content-Type": "application/activity+json"},
                           BODY, key, now=NOW)
    params = parse_signature(headers)
    assert params.key_id == f"{ACTOR}/ed25519-key"
    assert params.algorithm == "ed25519"
    assert {"@method", "@target-uri", "@authority", "content-digest"} <= set(params.covered)
    verify_request(params, "POST", INBOX, headers, BODY, multikey_public_pem(multibase), now=NOW)
    # Not the RSA key's signature, and a changed body fails its digest.
    with pytest.raises(SignatureError, match="does not match the RSA key"):
        verify_request(params, "POST", INBOX, headers, BODY, rsa_public, now=NOW)
    with pytest.raises(SignatureError, match="does not match the body"):
        verify_request(params, "POST", INBOX, headers, b'{"changed": 1}',
                       multikey_public_pem(multibase), now=NOW)


def test_cavage_signatures_stay_rsa(keys: tuple[SigningKey, str, str]) -> None:
    key, rsa_public, multibase = keys
    headers = sign_request("cavage", "POST", INBOX, {"Content-Type": "application/activity+json"},
                           BODY, key, now=NOW)
    params = parse_signature(headers)
    assert (params.key_id, params.algorithm) == (f"{ACTOR}#main-key", "rsa-sha256")
    verify_request(params, "POST", INBOX, headers, BODY, rsa_public, now=NOW)
    with pytest.raises(SignatureError):
        verify_request(params, "POST", INBOX, headers, BODY, multikey_public_pem(multibase),
                       now=NOW)


def test_multikey_and_pem_name_the_same_key() -> None:
    private_pem, multibase = integrity.generate_ed25519_keypair()
    pem = multikey_public_pem(multibase)
    assert pem == ed25519_public_pem(private_pem)
    assert is_multikey(pem, multibase)
    assert not is_multikey(pem, integrity.generate_ed25519_keypair()[1])
    assert not is_multikey(generate_rsa_keypair()[1], multibase)
    public = load_public_key(pem)
    assert isinstance(public, ed25519.Ed25519PublicKey)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert integrity.public_multibase(public) == multibase and len(raw) == 32
    with pytest.raises(SignatureError, match="not an Ed25519 key"):
        multikey_public_pem("z" + "1" * 20)


def test_a_signing_key_never_shows_its_private_halves(keys: tuple[SigningKey, str, str]) -> None:
    key, _, _ = keys
    assert "PRIVATE KEY" not in repr(key) and "PRIVATE KEY" not in str(key)
    assert f"{ACTOR}/ed25519-key" in repr(key)
