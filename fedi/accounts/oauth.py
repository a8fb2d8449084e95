"""OAuth 2 for the client API: registered apps, authorization codes and bearer tokens.

Secrets (client secrets, codes, access and refresh tokens) are stored only as SHA-256, like
session cookies: a copy of the database lets no one act as anyone. Use cases take a session
and never a request, so the API, the consent page and the CLI share them.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts import scopes as scope_rules
from fedi.accounts.tokens import digest, new_token
from fedi.store.models import OAuthApp, OAuthToken

OOB = "urn:ietf:wg:oauth:2.0:oob"
LAST_USED_EVERY = 300.0  # seconds between writes of a token's last use


@dataclass(frozen=True)
class Grant:
    """What a presented bearer token allows: the app, the person (None for an app-only
    token) and the scopes."""

    token_id: int
    app_id: int
    app_name: str
    app_website: str | None
    actor_id: int | None
    scopes: frozenset[str]

    def allows(self, needed: str) -> bool:
        return scope_rules.covers(self.scopes, needed)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    refresh_token: str | None
    row: OAuthToken


async def register_app(
    session: AsyncSession, *, name: str, redirect_uris: list[str], scopes: frozenset[str],
    website: str | None = None,
) -> tuple[OAuthApp, str]:
    """A new app and its client secret (shown once)."""
    secret, secret_hash = new_token()
    app = OAuthApp(client_id=secrets.token_urlsafe(32), client_secret_hash=secret_hash,
                   name=name, website=website, redirect_uris="\n".join(redirect_uris),
                   scopes=scope_rules.text(scopes))
    session.add(app)
    await session.flush()
    return app, secret


async def issue_token(
    session: AsyncSession, app: OAuthApp, actor_id: int | None, scopes: frozenset[str],
    *, refresh: bool = False, lifetime: float | None = None,
) -> IssuedToken:
    raw, raw_hash = new_token()
    refresh_raw, refresh_hash = new_token() if refresh else (None, None)
    row = OAuthToken(token_hash=raw_hash, refresh_hash=refresh_hash, app_id=app.id,
                     actor_id=actor_id, scopes=scope_rules.text(scopes),
                     expires_at=time.time() + lifetime if lifetime else None)
    session.add(row)
    await session.flush()
    return IssuedToken(raw, refresh_raw, row)


async def find_token(session: AsyncSession, raw: str) -> Grant | None:
    """The grant of a live bearer token, or None (unknown, revoked or expired)."""
    if not raw or len(raw) > 512:
        return None
    found = (await session.execute(
        select(OAuthToken, OAuthApp).join(OAuthApp, OAuthApp.id == OAuthToken.app_id)
        .where(OAuthToken.token_hash == digest(raw))
    )).one_or_none()
    if found is None:
        return None
    token, app = found
    now = time.time()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        token.last_used_at = now
        await session.commit()
    return Grant(token_id=token.id, app_id=app.id, app_name=app.name, app_website=app.website,
                 actor_id=token.actor_id, scopes=frozenset(token.scopes.split()))
