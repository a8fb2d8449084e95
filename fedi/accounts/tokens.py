"""Random tokens handed to people (session cookies, reset links, invite codes), stored only
as their SHA-256: a copy of the database lets no one sign in or reset a password."""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> tuple[str, str]:
    """A 256-bit random token (URL-safe) and the hash to store."""
    raw = secrets.token_urlsafe(32)
    return raw, digest(raw)


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def derived(raw: str, purpose: str) -> str:
    """A value bound to a secret token, for one purpose (the CSRF token of a session)."""
    return hashlib.sha256(f"fedi:{purpose}:{raw}".encode()).hexdigest()
