"""TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps), as authenticator apps do it."""

from __future__ import annotations

import base64
import hmac
import secrets
import struct
import time
from urllib.parse import quote

STEP = 30
DIGITS = 6


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode()


def code_at(secret: str, moment: float) -> str:
    key = base64.b32decode(secret)
    digest = hmac.digest(key, struct.pack(">Q", int(moment // STEP)), "sha1")
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**DIGITS).zfill(DIGITS)


def verify(secret: str, code: str, moment: float | None = None) -> bool:
    """Accept the code of this step or one step either side (clock drift)."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == DIGITS):
        return False
    moment = time.time() if moment is None else moment
    return any(
        hmac.compare_digest(code_at(secret, moment + drift * STEP), code) for drift in (-1, 0, 1)
    )


def uri(secret: str, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads (typed in or as a QR code)."""
    label = quote(f"{issuer}:{account}")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}"
