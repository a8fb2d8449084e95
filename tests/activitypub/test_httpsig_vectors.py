"""Published HTTP signature test vectors, round trips, and key loading.

Sources, copied byte for byte:
- RFC 9421 Appendix B: keys B.1.2 (test-key-rsa-pss, public part) and B.1.4 (test-key-ed25519),
  the test request of B.2, and the signatures of B.2.1, B.2.2, B.2.3 and B.2.6.
- draft-cavage-http-signatures-12 Appendix C: the 1024-bit "Test" key, the example request, and
  the C.1, C.2 and C.3 signatures. Draft 12 prints C.3 with (created)/(expires) added to the
  headers list but keeps the signature computed over the list used here (the same bytes as in
  drafts 10 and 11); the signature only verifies over that list.
"""

from __future__ import annotations

import email.utils
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from fedi.activitypub import httpsig_cavage, httpsig_rfc9421
from fedi.activitypub.digest import verify_body_digest
from fedi.activitypub.httpsig import (
    Scheme,
    parse_signature,
    sign_request,
    signature_base,
    verify_request,
    verify_signature_only,
)
from fedi.activitypub.httpsig_sfv import Item
from fedi.activitypub.keys import (
    SigningKey,
    generate_rsa_keypair,
    load_private_key,
    load_public_key,
)
from fedi.errors import SignatureError

VECTORS = Path(__file__).parent / "vectors"


def _pem(name: str) -> str:
    return (VECTORS / name).read_text()


# --- draft-cavage-http-signatures-12, Appendix C -------------------------------------------

CAVAGE_URL = "https://example.com/foo?param=value&pet=dog"
CAVAGE_HEADERS = {
    "Host": "example.com",
    "Date": "Sun, 05 Jan 2014 21:31:40 GMT",
    "Content-Type": "application/json",
    "Digest": "SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
    "Content-Length": "18",
}
CAVAGE_BODY = b'{"hello": "world"}'
CAVAGE_NOW = email.utils.parsedate_to_datetime(CAVAGE_HEADERS["Date"]).timestamp() + 30

C1_SIGNATURE = (
    'keyId="Test",algorithm="rsa-sha256",'
    'signature="SjWJWbWN7i0wzBvtPl8rbASWz5xQW6mcJmn+ibttBqtifLN7Sazz'
    "6m79cNfwwb8DMJ5cou1s7uEGKKCs+FLEEaDV5lp7q25WqS+lavg7T8hc0GppauB"
    '6hbgEKTwblDHYGEtbGmtdHgVCk9SuS13F0hZ8FD0k/5OxEPXe5WozsbM="'
)
C2_SIGNATURE = (
    'keyId="Test",algorithm="rsa-sha256",headers="(request-target) host date",'
    'signature="qdx+H7PHHDZgy4y/Ahn9Tny9V3GP6YgBPyUXMmoxWtLbHpUnXS2mg2+SbrQDMCJypxBLSPQR2aAjn'
    "7ndmw2iicw3HMbe8VfEdKFYRqzic+efkb3nndiv/x1xSHDJWeSWkx3ButlYSuBskLu6kd9Fswtemr3lgdDEmn04swr2"
    'Os0="'
)
C3_SIGNATURE = (
    'keyId="Test",algorithm="rsa-sha256",'
    'headers="(request-target) host date content-type digest content-length",'
    'signature="vSdrb+dS3EceC9bcwHSo4MlyKS59iFIrhgYkz8+oVLEEzmYZZvRs8rgOp+63LEM3v+MFHB32NfpB2bEK'
    "BIvB1q52LaEUHFv120V01IL+TAD48XaERZFukWgHoBTLMhYS2Gb51gWxpeIq8knRmPnYePbF5MOkR0Zkly4zKH7s1d"
    'E="'
)
C1_BASE = "date: Sun, 05 Jan 2014 21:31:40 GMT"
C2_BASE = (
    "(request-target): post /foo?param=value&pet=dog\n"
    "host: example.com\n"
    "date: Sun, 05 Jan 2014 21:31:40 GMT"
)
C3_BASE = C2_BASE + (
    "\ncontent-type: application/json\n"
    "digest: SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=\n"
    "content-length: 18"
)


@pytest.fixture(scope="module")
def cavage_public() -> rsa.RSAPublicKey:
    key = load_public_key(_pem("cavage-test-key.pub.pem"))
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@pytest.fixture(scope="module")
def cavage_private() -> rsa.RSAPrivateKey:
    key = load_private_key(_pem("cavage-test-key.pem"))
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def test_cavage_key_pair_belongs_together(
    cavage_private: rsa.RSAPrivateKey, cavage_public: rsa.RSAPublicKey
) -> None:
    assert cavage_private.public_key().public_numbers() == cavage_public.public_numbers()


def _cavage_request(signature: str) -> dict[str, str]:
    return {**CAVAGE_HEADERS, "Signature": signature}


@pytest.mark.parametrize(
    ("signature", "base", "covered"),
    [
        (C1_SIGNATURE, C1_BASE, ["date"]),
        (C2_SIGNATURE, C2_BASE, ["(request-target)", "host", "date"]),
        (
            C3_SIGNATURE,
            C3_BASE,
            ["(request-target)", "host", "date", "content-type", "digest", "content-length"],
        ),
    ],
    ids=["C.1-default", "C.2-basic", "C.3-all-headers"],
)
def test_cavage_vector_verifies_and_signs_identically(
    signature: str,
    base: str,
    covered: list[str],
    cavage_public: rsa.RSAPublicKey,
    cavage_private: rsa.RSAPrivateKey,
) -> None:
    headers = _cavage_request(signature)
    params = parse_signature(headers)
    assert params.scheme == "cavage"
    assert params.key_id == "Test"
    assert params.algorithm == "rsa-sha256"
    assert params.covered == tuple(covered)
    assert signature_base(params, "POST", CAVAGE_URL, headers) == base
    verify_signature_only(params, "POST", CAVAGE_URL, headers, cavage_public)

    # RSASSA-PKCS1-v1_5 is deterministic: signing again gives the published bytes.
    ours = httpsig_cavage.sign("POST", CAVAGE_URL, CAVAGE_HEADERS, covered, cavage_private, "Test")
    published_value = signature.rsplit('signature="', 1)[1]
    assert ours.rsplit('signature="', 1)[1] == published_value
    if "headers=" in signature:
        assert ours == signature


def test_cavage_c1_via_authorization_header(cavage_public: rsa.RSAPublicKey) -> None:
    headers = {**CAVAGE_HEADERS, "Authorization": f"Signature {C1_SIGNATURE}"}
    params = parse_signature(headers)
    verify_signature_only(params, "POST", CAVAGE_URL, headers, cavage_public)


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (C1_SIGNATURE, r"does not cover \(request-target\)"),
        (C2_SIGNATURE, "does not cover the digest header"),
    ],
    ids=["C.1-default", "C.2-basic"],
)
def test_cavage_vectors_without_digest_fail_the_policy(
    signature: str, reason: str, cavage_public: rsa.RSAPublicKey
) -> None:
    headers = _cavage_request(signature)
    with pytest.raises(SignatureError, match=reason):
        verify_request(
            parse_signature(headers),
            "POST",
            CAVAGE_URL,
            headers,
            CAVAGE_BODY,
            cavage_public,
            now=CAVAGE_NOW,
        )


def test_cavage_c3_passes_the_full_policy(cavage_public: rsa.RSAPublicKey) -> None:
    headers = _cavage_request(C3_SIGNATURE)
    params = parse_signature(headers)
    verify_request(params, "POST", CAVAGE_URL, headers, CAVAGE_BODY, cavage_public, now=CAVAGE_NOW)
    with pytest.raises(SignatureError, match=r"Date is .* in the past, outside the 1h window"):
        verify_request(params, "POST", CAVAGE_URL, headers, CAVAGE_BODY, cavage_public)


# --- RFC 9421, Appendix B --------------------------------------------------------------------

RFC_URL = "https://example.com/foo?param=Value&Pet=dog"
RFC_HEADERS = {
    "Host": "example.com",
    "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "Content-Type": "application/json",
    "Content-Digest": (
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+"
        "AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
    ),
    "Content-Length": "18",
}
RFC_BODY = b'{"hello": "world"}'
RFC_CREATED = 1618884473
RFC_NOW = RFC_CREATED + 5

B21_INPUT = 'sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"'
B21_SIGNATURE = (
    "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++"
    "wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rg"
    "FWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPn"
    "P5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:"
)
B21_BASE = (
    '"@signature-params": ();created=1618884473;keyid="test-key-rsa-pss"'
    ';nonce="b3k2pp5k7z-50gnwp.yemd"'
)

B22_INPUT = (
    'sig-b22=("@authority" "content-digest" "@query-param";name="Pet")'
    ';created=1618884473;keyid="test-key-rsa-pss";tag="header-example"'
)
B22_SIGNATURE = (
    "sig-b22=:LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfK"
    "tjvuJyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEf"
    "Y17SARYhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4j"
    "Y3I5rSV2DSBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==:"
)
B22_BASE = (
    '"@authority": example.com\n'
    '"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+'
    "AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n"
    '"@query-param";name="Pet": dog\n'
    '"@signature-params": ("@authority" "content-digest" "@query-param";name="Pet")'
    ';created=1618884473;keyid="test-key-rsa-pss";tag="header-example"'
)

B23_INPUT = (
    'sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" '
    '"content-length");created=1618884473;keyid="test-key-rsa-pss"'
)
B23_SIGNATURE = (
    "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt"
    "683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvK"
    "iLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8u"
    "i9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:"
)
B23_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@query": ?param=Value&Pet=dog\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+'
    "AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n"
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" '
    '"content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"'
)

B26_COMPONENTS = ("date", "@method", "@path", "@authority", "content-type", "content-length")
B26_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpB"
    "KRCw==:"
)
B26_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    '"content-length");created=1618884473;keyid="test-key-ed25519"'
)


@pytest.fixture(scope="module")
def rsa_pss_public() -> rsa.RSAPublicKey:
    key = load_public_key(_pem("rfc9421-test-key-rsa-pss.pub.pem"))
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@pytest.fixture(scope="module")
def ed25519_public() -> ed25519.Ed25519PublicKey:
    key = load_public_key(_pem("rfc9421-test-key-ed25519.pub.pem"))
    assert isinstance(key, ed25519.Ed25519PublicKey)
    return key


def _rfc_request(signature_input: str, signature: str) -> dict[str, str]:
    return {**RFC_HEADERS, "Signature-Input": signature_input, "Signature": signature}


def test_rfc9421_test_request_content_digest_matches_its_body() -> None:
    verify_body_digest(RFC_HEADERS, RFC_BODY)


@pytest.mark.parametrize(
    ("signature_input", "signature", "base", "label"),
    [
        (B21_INPUT, B21_SIGNATURE, B21_BASE, "sig-b21"),
        (B22_INPUT, B22_SIGNATURE, B22_BASE, "sig-b22"),
        (B23_INPUT, B23_SIGNATURE, B23_BASE, "sig-b23"),
    ],
    ids=["B.2.1-minimal", "B.2.2-selective", "B.2.3-full"],
)
def test_rfc9421_rsa_pss_vectors_verify(
    signature_input: str,
    signature: str,
    base: str,
    label: str,
    rsa_pss_public: rsa.RSAPublicKey,
) -> None:
    headers = _rfc_request(signature_input, signature)
    params = parse_signature(headers)
    assert params.scheme == "rfc9421"
    assert params.label == label
    assert params.key_id == "test-key-rsa-pss"
    assert params.algorithm is None
    assert params.created == RFC_CREATED
    assert signature_base(params, "POST", RFC_URL, headers) == base
    verify_signature_only(params, "POST", RFC_URL, headers, rsa_pss_public)
    # The same signature must not verify as PKCS#1 v1.5 once the algorithm is pinned.
    pinned = headers | {"Signature-Input": signature_input + ';alg="rsa-v1_5-sha256"'}
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature_only(parse_signature(pinned), "POST", RFC_URL, pinned, rsa_pss_public)


@pytest.mark.parametrize(
    ("signature_input", "signature"),
    [(B21_INPUT, B21_SIGNATURE), (B22_INPUT, B22_SIGNATURE)],
    ids=["B.2.1-minimal", "B.2.2-selective"],
)
def test_rfc9421_partial_vectors_fail_the_policy(
    signature_input: str, signature: str, rsa_pss_public: rsa.RSAPublicKey
) -> None:
    headers = _rfc_request(signature_input, signature)
    with pytest.raises(SignatureError, match="does not cover @method"):
        verify_request(
            parse_signature(headers),
            "POST",
            RFC_URL,
            headers,
            RFC_BODY,
            rsa_pss_public,
            now=RFC_NOW,
        )


def test_rfc9421_b23_passes_the_full_policy(rsa_pss_public: rsa.RSAPublicKey) -> None:
    headers = _rfc_request(B23_INPUT, B23_SIGNATURE)
    params = parse_signature(headers)
    verify_request(params, "POST", RFC_URL, headers, RFC_BODY, rsa_pss_public, now=RFC_NOW)
    # Replayed today, the 2021 signature is far outside the window.
    with pytest.raises(SignatureError, match="outside the 1h window"):
        verify_request(params, "POST", RFC_URL, headers, RFC_BODY, rsa_pss_public)


def test_rfc9421_b26_ed25519_verifies(ed25519_public: ed25519.Ed25519PublicKey) -> None:
    headers = _rfc_request(B26_INPUT, B26_SIGNATURE)
    params = parse_signature(headers)
    assert params.covered == B26_COMPONENTS
    assert signature_base(params, "POST", RFC_URL, headers) == B26_BASE
    verify_signature_only(params, "POST", RFC_URL, headers, ed25519_public)
    # It signs no digest of the body, so a POST with it is refused.
    with pytest.raises(SignatureError, match="does not cover the digest header"):
        verify_request(params, "POST", RFC_URL, headers, RFC_BODY, ed25519_public, now=RFC_NOW)


def test_rfc9421_b26_signing_reproduces_the_published_bytes() -> None:
    # Ed25519 is deterministic, so our signer must produce exactly the RFC's signature.
    private = load_private_key(_pem("rfc9421-test-key-ed25519.pem"))
    signature_input, signature = httpsig_rfc9421.sign(
        "POST",
        RFC_URL,
        RFC_HEADERS,
        B26_COMPONENTS,
        private,
        "test-key-ed25519",
        created=RFC_CREATED,
        include_alg=False,
        label="sig-b26",
    )
    assert signature_input == B26_INPUT
    assert signature == B26_SIGNATURE


def test_rfc9421_b22_inputs_reproduce_the_published_signature_input(rsa_key: SigningKey) -> None:
    # RSA-PSS is randomized, so only the Signature-Input can be compared (with any RSA key).
    signature_input, _ = httpsig_rfc9421.sign(
        "POST",
        RFC_URL,
        RFC_HEADERS,
        ["@authority", "content-digest", Item("@query-param", {"name": "Pet"})],
        rsa_key.private_key,
        "test-key-rsa-pss",
        created=RFC_CREATED,
        include_alg=False,
        label="sig-b22",
        tag="header-example",
    )
    assert signature_input == B22_INPUT


# --- round trips -----------------------------------------------------------------------------

NOW = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
URL = "https://remote.example:8443/users/alice/inbox?page=2"


def _public_pem(key: SigningKey) -> str:
    private = key.private_key
    assert isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("https://groups.example/groups/g#main-key", generate_rsa_keypair()[0])


@pytest.fixture(scope="module")
def ed25519_key() -> SigningKey:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey("https://groups.example/groups/g#ed25519-key", pem.decode())


@pytest.mark.parametrize("scheme", ["cavage", "rfc9421"])
@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_round_trip(
    scheme: Scheme, kind: str, method: str, rsa_key: SigningKey, ed25519_key: SigningKey
) -> None:
    key = rsa_key if kind == "rsa" else ed25519_key
    body = b'{"type": "Follow"}' if method == "POST" else None
    given = {"Accept": "application/activity+json"}
    if body is not None:
        given["Content-Type"] = "application/activity+json"
    before = dict(given)

    headers = sign_request(scheme, method, URL, given, body, key, now=NOW)

    assert given == before, "the caller's headers must not be modified"
    assert {k: headers[k] for k in given} == given
    assert headers["Host"] == "remote.example:8443"
    assert headers["Date"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    params = parse_signature(headers)
    assert params.scheme == scheme
    assert params.key_id == key.key_id
    public_pem = _public_pem(key)
    verify_request(params, method, URL, headers, body, public_pem, now=NOW + 30)
    verify_request(params, method, URL, headers, body, load_public_key(public_pem), now=NOW + 30)


@pytest.mark.parametrize(
    ("kind", "method", "algorithm", "covered"),
    [
        ("rsa", "GET", "rsa-sha256", "(request-target) host date"),
        ("rsa", "POST", "rsa-sha256", "(request-target) host date digest content-type"),
        ("ed25519", "POST", "hs2019", "(request-target) host date digest content-type"),
    ],
)
def test_cavage_header_shape(
    kind: str,
    method: str,
    algorithm: str,
    covered: str,
    rsa_key: SigningKey,
    ed25519_key: SigningKey,
) -> None:
    key = rsa_key if kind == "rsa" else ed25519_key
    body = b"{}" if method == "POST" else None
    given = {"Content-Type": "application/activity+json"} if body is not None else {}
    headers = sign_request("cavage", method, URL, given, body, key, now=NOW)
    assert headers["Signature"].startswith(
        f'keyId="{key.key_id}",algorithm="{algorithm}",headers="{covered}",signature="'
    )
    assert ("Digest" in headers) == (body is not None)
    assert "Content-Digest" not in headers


@pytest.mark.parametrize(
    ("kind", "method", "alg", "components"),
    [
        ("rsa", "GET", "rsa-v1_5-sha256", '"@method" "@target-uri" "@authority" "date"'),
        (
            "rsa",
            "POST",
            "rsa-v1_5-sha256",
            '"@method" "@target-uri" "@authority" "date" "content-digest"',
        ),
        (
            "ed25519",
            "POST",
            "ed25519",
            '"@method" "@target-uri" "@authority" "date" "content-digest"',
        ),
    ],
)
def test_rfc9421_header_shape(
    kind: str,
    method: str,
    alg: str,
    components: str,
    rsa_key: SigningKey,
    ed25519_key: SigningKey,
) -> None:
    key = rsa_key if kind == "rsa" else ed25519_key
    body = b"{}" if method == "POST" else None
    headers = sign_request("rfc9421", method, URL, {}, body, key, now=NOW)
    assert headers["Signature-Input"] == (
        f'sig1=({components});created={NOW};keyid="{key.key_id}";alg="{alg}"'
    )
    assert headers["Signature"].startswith("sig1=:") and headers["Signature"].endswith(":")
    assert ("Content-Digest" in headers) == (body is not None)
    assert "Digest" not in headers


def test_sign_request_keeps_given_host_and_date_and_replaces_stale_signatures(
    rsa_key: SigningKey,
) -> None:
    given = {
        "host": "remote.example:8443",
        "date": "Tue, 14 Nov 2023 22:13:00 GMT",
        "signature": "stale",
        "digest": "SHA-256=stale",
    }
    headers = sign_request("cavage", "POST", URL, given, b"{}", rsa_key, now=NOW)
    assert headers["host"] == "remote.example:8443" and "Host" not in headers
    assert headers["date"] == given["date"] and "Date" not in headers
    assert "signature" not in headers and "digest" not in headers
    verify_request(
        parse_signature(headers), "POST", URL, headers, b"{}", _public_pem(rsa_key), now=NOW
    )


# --- keys ------------------------------------------------------------------------------------


def test_generate_rsa_keypair_formats(rsa_key: SigningKey) -> None:
    private_pem, public_pem = generate_rsa_keypair()
    assert private_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    private = load_private_key(private_pem)
    public = load_public_key(public_pem)
    assert isinstance(private, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)
    assert private.key_size == 2048
    assert private.public_key().public_numbers() == public.public_numbers()


def test_load_private_key_is_cached() -> None:
    pem = _pem("cavage-test-key.pem")
    first = load_private_key(pem)
    hits = load_private_key.cache_info().hits
    second = load_private_key(pem)
    assert second is first
    assert load_private_key.cache_info().hits == hits + 1


def test_signing_key_uses_the_cache(rsa_key: SigningKey) -> None:
    assert rsa_key.private_key is rsa_key.private_key is load_private_key(rsa_key.private_pem)


def test_load_public_key_is_cached_and_accepts_pkcs1() -> None:
    spki = _pem("cavage-test-key.pub.pem")
    public = load_public_key(spki)
    assert load_public_key(spki) is public
    assert isinstance(public, rsa.RSAPublicKey)
    pkcs1 = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    assert pkcs1.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    loaded = load_public_key(pkcs1.decode())
    assert isinstance(loaded, rsa.RSAPublicKey)
    assert loaded.public_numbers() == public.public_numbers()


def test_load_public_key_rejects_garbage() -> None:
    with pytest.raises(SignatureError, match="public key PEM could not be loaded"):
        load_public_key("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
