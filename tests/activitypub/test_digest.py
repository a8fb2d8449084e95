"""Body digests (security checklist item 6)."""

import base64
import hashlib

import pytest

from fedi.activitypub.digest import content_digest_header, digest_header, verify_body_digest
from fedi.errors import SignatureError

BODY = b'{"hello": "world"}'
# Published values for this body: draft-cavage-12 Appendix C and RFC 9421 Appendix B.2.
CAVAGE_DIGEST = "SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="
RFC9421_CONTENT_DIGEST = (
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+"
    "AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
)
SHA512_B64 = base64.b64encode(hashlib.sha512(BODY).digest()).decode()


def test_digest_header_matches_the_published_value() -> None:
    assert digest_header(BODY) == CAVAGE_DIGEST


def test_content_digest_header_is_rfc9530_sha256() -> None:
    sha256_b64 = CAVAGE_DIGEST.removeprefix("SHA-256=")
    assert content_digest_header(BODY) == f"sha-256=:{sha256_b64}:"


def test_own_headers_verify() -> None:
    verify_body_digest({"Digest": digest_header(BODY)}, BODY)
    verify_body_digest({"Content-Digest": content_digest_header(BODY)}, BODY)


def test_published_content_digest_sha512_verifies() -> None:
    verify_body_digest({"Content-Digest": RFC9421_CONTENT_DIGEST}, BODY)


@pytest.mark.parametrize("name", ["SHA-256", "sha-256", "Sha-256"])
def test_digest_algorithm_name_is_case_insensitive(name: str) -> None:
    # bovine sends "sha-256=".
    verify_body_digest({"Digest": CAVAGE_DIGEST.replace("SHA-256", name)}, BODY)


def test_digest_sha512_accepted() -> None:
    verify_body_digest({"Digest": f"SHA-512={SHA512_B64}"}, BODY)


@pytest.mark.parametrize("prefix", ["", "CONTENT-", "content-"])
@pytest.mark.parametrize("name", ["digest", "DIGEST", "Digest"])
def test_header_name_is_case_insensitive(prefix: str, name: str) -> None:
    value = RFC9421_CONTENT_DIGEST if prefix else CAVAGE_DIGEST
    verify_body_digest({prefix + name: value}, BODY)


def test_unknown_algorithms_are_ignored_next_to_a_known_one() -> None:
    verify_body_digest({"Digest": f"MD5=Sd/dVLAcvNLSq16eXua5uQ==, {CAVAGE_DIGEST}"}, BODY)
    verify_body_digest({"Content-Digest": f"md5=:AAAA:, {RFC9421_CONTENT_DIGEST}"}, BODY)


def test_only_unknown_algorithms_rejected() -> None:
    with pytest.raises(SignatureError, match="no SHA-256 or SHA-512"):
        verify_body_digest({"Digest": "MD5=Sd/dVLAcvNLSq16eXua5uQ=="}, BODY)
    with pytest.raises(SignatureError, match="no sha-256 or sha-512"):
        verify_body_digest({"Content-Digest": "md5=:Sd/dVLAcvNLSq16eXua5uQ==:"}, BODY)


def test_missing_digest_rejected() -> None:
    with pytest.raises(SignatureError, match=r"^missing digest$"):
        verify_body_digest({"Content-Type": "application/json"}, BODY)


def test_tampered_body_rejected() -> None:
    tampered = BODY.replace(b"world", b"w0rld")
    with pytest.raises(SignatureError, match="Digest SHA-256 does not match the body"):
        verify_body_digest({"Digest": CAVAGE_DIGEST}, tampered)
    with pytest.raises(SignatureError, match="Content-Digest SHA-512 does not match the body"):
        verify_body_digest({"Content-Digest": RFC9421_CONTENT_DIGEST}, tampered)
    with pytest.raises(SignatureError, match="Digest SHA-512 does not match"):
        verify_body_digest({"Digest": f"SHA-512={SHA512_B64}"}, tampered)


def test_every_known_value_must_match() -> None:
    wrong_512 = base64.b64encode(hashlib.sha512(b"other").digest()).decode()
    with pytest.raises(SignatureError, match="SHA-512 does not match"):
        verify_body_digest({"Digest": f"{CAVAGE_DIGEST},SHA-512={wrong_512}"}, BODY)


def test_both_headers_are_checked() -> None:
    with pytest.raises(SignatureError, match="Content-Digest SHA-256 does not match"):
        verify_body_digest(
            {"Digest": CAVAGE_DIGEST, "Content-Digest": content_digest_header(b"other")}, BODY
        )


@pytest.mark.parametrize(
    "headers",
    [
        {"Digest": "SHA-256=not base64!"},
        {"Content-Digest": "sha-256=not-a-byte-sequence"},
        {"Content-Digest": "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"},
        {"Content-Digest": "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:,"},
    ],
)
def test_malformed_values_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        verify_body_digest(headers, BODY)


class _RepeatedLines(dict[str, str]):
    """Like Starlette's Headers: items() yields every line, repeated names included."""

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return [("Digest", CAVAGE_DIGEST), ("digest", "SHA-256=" + "A" * 43 + "=")]


def test_repeated_digest_lines_are_all_checked() -> None:
    with pytest.raises(SignatureError, match="does not match the body"):
        verify_body_digest(_RepeatedLines(), BODY)
