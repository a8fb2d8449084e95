"""The grants that act for a person: authorization codes from the consent page (RFC 6749
§4.1, with PKCE RFC 7636, S256 only) and the password grant through the site's own login.

A code lives ten minutes, works once, and only for the app, redirect URI and PKCE verifier
it was issued with. The password grant goes through `login.log_in`, so the throttle,
two-factor login, approval and suspension refuse here exactly as on the login form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts import login, sessions, throttle
from fedi.accounts import scopes as scope_rules
from fedi.accounts.oauth import (
    IssuedToken,
    OAuthError,
    issue_token,
    password_grant_enabled,
    redirect_uris_of,
)
from fedi.accounts.passwords import Hasher
from fedi.accounts.tokens import digest, new_token
from fedi.store.models import Account, Actor, OAuthApp, OAuthCode

CODE_LIFETIME = 600.0
# RFC 7636 §4.1 / §4.2: 43–128 unreserved characters; S256 challenges are 43 base64url.
VERIFIER_RE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
INVALID_CODE = ("the authorization code is unknown, expired, already used, or was issued to "
                "another app or redirect URI")


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                    ).rstrip(b"=").decode()


def check_challenge(challenge: str | None, method: str | None) -> str | None:
    """The PKCE challenge to keep (None without one); OAuthError invalid_request for a
    method other than S256 (plain gives no protection against a stolen code) or a
    malformed challenge."""
    if not challenge:
        if method:
            raise OAuthError("invalid_request", "code_challenge_method without code_challenge")
        return None
    if (method or "plain") != "S256":
        raise OAuthError("invalid_request", "code_challenge_method must be S256 (plain is "
                         "not accepted)")
    if not CHALLENGE_RE.fullmatch(challenge):
        raise OAuthError("invalid_request", "code_challenge must be the 43-character "
                         "base64url SHA-256 of the code verifier")
    return challenge


async def issue_code(
    session: AsyncSession, app: OAuthApp, actor_id: int, scopes: frozenset[str],
    redirect_uri: str, challenge: str | None,
) -> str:
    """A one-time code for the consent just given (the caller checked app, URI, scopes)."""
    raw, hashed = new_token()
    moment = time.time()
    session.add(OAuthCode(
        code_hash=hashed, app_id=app.id, actor_id=actor_id, scopes=scope_rules.text(scopes),
        redirect_uri=redirect_uri, code_challenge=challenge,
        challenge_method="S256" if challenge else None, created_at=moment,
        expires_at=moment + CODE_LIFETIME))
    await session.flush()
    return raw


async def redeem_code(
    session: AsyncSession, app: OAuthApp, raw: str | None, redirect_uri: str | None,
    verifier: str | None,
) -> IssuedToken:
    """A token (with a refresh token) for a code, or OAuthError invalid_grant. The code is
    spent only by a redemption that succeeds, and by one alone when two race."""
    code = (await session.execute(select(OAuthCode).where(
        OAuthCode.code_hash == digest(raw)))).scalar_one_or_none() if raw else None
    moment = time.time()
    if (code is None or code.app_id != app.id or code.used_at is not None
            or code.expires_at <= moment):
        raise OAuthError("invalid_grant", INVALID_CODE)
    if redirect_uri is None and redirect_uris_of(app) == [code.redirect_uri]:
        redirect_uri = code.redirect_uri  # RFC 6749 §4.1.3: optional when it was implied
    if redirect_uri != code.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri is not the one the code was issued "
                         "for")
    if code.code_challenge is not None:
        if not verifier or not VERIFIER_RE.fullmatch(verifier):
            raise OAuthError("invalid_grant", "code_verifier is required (43 to 128 "
                             "characters) for a code issued with a PKCE challenge")
        if not hmac.compare_digest(s256(verifier), code.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the challenge")
    spent = await session.execute(update(OAuthCode).where(
        OAuthCode.id == code.id, OAuthCode.used_at.is_(None)).values(used_at=moment))
    if int(getattr(spent, "rowcount", 0) or 0) != 1:
        raise OAuthError("invalid_grant", INVALID_CODE)
    return await issue_token(session, app, code.actor_id, frozenset(code.scopes.split()),
                             refresh=True)


@dataclass(frozen=True)
class PasswordAttempt:
    username: str  # a user name, or the e-mail address of the account
    password: str
    address: str
    user_agent: str | None = None


async def _name_for(session: AsyncSession, given: str) -> str:
    """The user name an e-mail address belongs to (Mastodon apps send the e-mail), when
    exactly one account has it; else the text as given."""
    given = given.strip()
    if "@" not in given:
        return given
    names = (await session.execute(
        select(Actor.username).join(Account, Account.actor_id == Actor.id)
        .where(func.lower(Account.email) == given.lower()).limit(2))).scalars().all()
    return names[0] if len(names) == 1 else given


async def password_grant(
    session: AsyncSession, hasher: Hasher, attempt: PasswordAttempt,
    limits: throttle.Limits, app: OAuthApp, scopes: frozenset[str],
) -> IssuedToken:
    """A token for a person's name (or e-mail) and password, or OAuthError. The caller
    commits either way: a failed attempt counts toward the throttle."""
    if not await password_grant_enabled(session):
        raise OAuthError("unsupported_grant_type", "the password grant is turned off on "
                         "this instance: sign in through the browser (authorization code)")
    name = await _name_for(session, attempt.username[:320])
    try:
        actor, web_token = await login.log_in(
            session, hasher, login.Attempt(name, attempt.password, attempt.address,
                                           attempt.user_agent), limits, session_days=1)
    except login.LoginRefused as refused:
        reason = refused.reason
        if refused.needs_code:
            reason = ("this account uses two-factor login, which the password grant cannot "
                      "ask for: sign in through the browser (authorization code)")
        raise OAuthError("invalid_grant", reason) from None
    # log_in opens a browser session as it signs in; an app gets a token instead.
    await sessions.end(session, web_token)
    return await issue_token(session, app, actor.id, scopes)
