"""OAuth 2 for the client API: registered apps, bearer and refresh tokens, revocation, and
the admin's switch for the password grant (authorization codes: `oauth_codes`).

Secrets (client secrets, codes, access and refresh tokens) are stored only as SHA-256, like
session cookies: a copy of the database lets no one act as anyone. Use cases take a session
and never a request, so the API, the consent page, the settings page and the CLI share them.

Access tokens do not expire (as Mastodon's); a refresh token, issued with the authorization
code grant, rotates: using it revokes the pair it came with. Failures a client must handle
are `OAuthError` with RFC 6749's error code.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts import scopes as scope_rules
from fedi.accounts import suspension
from fedi.accounts.tokens import digest, new_token
from fedi.errors import FediError, ValidationError
from fedi.store.models import InstanceSetting, OAuthApp, OAuthToken

OOB = "urn:ietf:wg:oauth:2.0:oob"
LAST_USED_EVERY = 300.0  # seconds between writes of a token's last use
MAX_NAME = 100
MAX_URI = 2000
# Schemes a browser would run or read locally rather than hand to an app.
UNSAFE_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "about", "blob",
                            "filesystem", "view-source"})
SCHEME_RE = re.compile(r"[a-z][a-z0-9+.-]*")
_GRANT_SWITCH_KEY = "api_password_grant"


class OAuthError(FediError):
    """An RFC 6749 error: `error` is its code (invalid_grant, invalid_client, ...), the
    reason its description; `status` the HTTP status the token endpoint answers with."""

    def __init__(self, error: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.error = error
        self.status = status


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
    if token.actor_id is not None and await suspension.find(session, token.actor_id):
        return None  # a suspended person's apps stop with their sessions (and resume after)
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        token.last_used_at = now
        await session.commit()
    return Grant(token_id=token.id, app_id=app.id, app_name=app.name, app_website=app.website,
                 actor_id=token.actor_id, scopes=frozenset(token.scopes.split()))


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(raw: str) -> str:
    """A redirect URI an app may register: the out-of-band URN, an https URL, an http URL
    to this machine (RFC 8252 loopback), or an app's own scheme (`elk://`, `com.app:/cb`);
    never a fragment, nor a scheme the browser would run itself. ValidationError says why."""
    uri = raw.strip()
    if uri == OOB:
        return uri
    if not uri or len(uri) > MAX_URI or any(c.isspace() or ord(c) < 32 for c in uri):
        raise ValidationError(f"redirect URI {uri[:80]!r} must be one absolute URI of at most "
                              f"{MAX_URI} characters, without spaces")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not SCHEME_RE.fullmatch(scheme) or not (parts.netloc or parts.path):
        raise ValidationError(f"redirect URI {uri!r} must be an absolute URI")
    if parts.fragment or "#" in uri:
        raise ValidationError(f"redirect URI {uri!r} must not contain a fragment (#)")
    if scheme in UNSAFE_SCHEMES:
        raise ValidationError(f"redirect URI {uri!r} uses a scheme apps cannot receive")
    if scheme in ("http", "https"):
        try:
            host = parts.hostname
        except ValueError:
            host = None
        if not host:
            raise ValidationError(f"redirect URI {uri!r} has no host")
        if scheme == "http" and not _loopback(host):
            raise ValidationError(f"redirect URI {uri!r} must use https (http is allowed only "
                                  "for localhost)")
    return uri


async def register(
    session: AsyncSession, *, name: str | None, redirect_uris: list[str], scopes: str | None,
    website: str | None,
) -> tuple[OAuthApp, str]:
    """Check what an app sent (POST /api/v1/apps) and register it; ValidationError names
    what is wrong, nothing is written then."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("client_name is required")
    if len(name) > MAX_NAME:
        raise ValidationError(f"client_name is longer than {MAX_NAME} characters")
    uris = [check_redirect_uri(u) for raw in redirect_uris for u in raw.split("\n")
            if u.strip()]
    if not uris:
        raise ValidationError("redirect_uris is required (use urn:ietf:wg:oauth:2.0:oob to be "
                              "shown the code instead)")
    try:
        wanted = scope_rules.parse(scopes)
    except scope_rules.ScopeError as exc:
        raise ValidationError(str(exc)) from None
    site = (website or "").strip() or None
    if site is not None and (len(site) > MAX_URI or urlsplit(site).scheme not in (
            "http", "https") or not urlsplit(site).netloc):
        raise ValidationError(f"website {site[:80]!r} must be an http or https URL")
    return await register_app(session, name=name, redirect_uris=list(dict.fromkeys(uris)),
                              scopes=wanted, website=site)


def redirect_uris_of(app: OAuthApp) -> list[str]:
    return [uri for uri in app.redirect_uris.split("\n") if uri]


def scopes_of(app: OAuthApp) -> frozenset[str]:
    return frozenset(app.scopes.split())


async def find_app(session: AsyncSession, client_id: str | None) -> OAuthApp | None:
    if not client_id or len(client_id) > 64:
        return None
    return (await session.execute(
        select(OAuthApp).where(OAuthApp.client_id == client_id))).scalar_one_or_none()


async def authenticate_client(
    session: AsyncSession, client_id: str | None, client_secret: str | None,
) -> OAuthApp:
    """The app whose id and secret these are, or OAuthError invalid_client (401)."""
    app = await find_app(session, client_id)
    if app is None or not client_secret or not hmac.compare_digest(
            app.client_secret_hash, digest(client_secret)):
        raise OAuthError("invalid_client", "Client authentication failed: the client_id is "
                         "unknown or the client_secret is wrong", status=401)
    return app


def granted_scopes(app: OAuthApp, asked: str | None) -> frozenset[str]:
    """The scopes asked for (default `read`), if the app registered them; else OAuthError
    invalid_scope."""
    try:
        wanted = scope_rules.parse(asked)
    except scope_rules.ScopeError as exc:
        raise OAuthError("invalid_scope", str(exc)) from None
    if not scope_rules.within(wanted, scopes_of(app)):
        raise OAuthError("invalid_scope", f"the app registered the scopes {app.scopes!r}; "
                         f"{scope_rules.text(wanted)!r} asks for more")
    return wanted


async def refresh(
    session: AsyncSession, app: OAuthApp, raw: str | None, asked: str | None,
) -> IssuedToken:
    """A new token pair for a refresh token of this app; the old pair is revoked (rotation:
    a stolen refresh token works once, for whoever is first). `asked` may narrow the
    scopes, never widen them."""
    token = (await session.execute(select(OAuthToken).where(
        OAuthToken.refresh_hash == digest(raw or "")))).scalar_one_or_none() if raw else None
    if token is None or token.app_id != app.id or token.revoked_at is not None:
        raise OAuthError("invalid_grant", "the refresh token is unknown, revoked, already "
                         "used, or was issued to another app")
    scopes = frozenset(token.scopes.split())
    if asked:
        narrower = granted_scopes(app, asked)
        if not scope_rules.within(narrower, scopes):
            raise OAuthError("invalid_scope", "a refresh may not ask for more scopes than "
                             f"the token had ({token.scopes})")
        scopes = narrower
    revoked = await session.execute(update(OAuthToken).where(
        OAuthToken.id == token.id, OAuthToken.revoked_at.is_(None)).values(
        revoked_at=time.time()))
    if int(getattr(revoked, "rowcount", 0) or 0) != 1:  # another request used it first
        raise OAuthError("invalid_grant", "the refresh token was already used")
    return await issue_token(session, app, token.actor_id, scopes, refresh=True)


async def revoke(session: AsyncSession, app: OAuthApp, raw: str) -> bool:
    """Revoke an access or refresh token of this app (RFC 7009): an unknown or already
    revoked token is fine; False when the token belongs to another app."""
    if not raw or len(raw) > 512:
        return True
    hashed = digest(raw)
    token = (await session.execute(select(OAuthToken).where(
        or_(OAuthToken.token_hash == hashed, OAuthToken.refresh_hash == hashed))
    )).scalar_one_or_none()
    if token is None:
        return True
    if token.app_id != app.id:
        return False
    if token.revoked_at is None:
        token.revoked_at = time.time()
    return True


async def revoke_for_person(
    session: AsyncSession, actor_id: int, app_id: int | None = None,
) -> int:
    """Revoke every live token of a person (of one app, or of all); how many."""
    query = update(OAuthToken).where(OAuthToken.actor_id == actor_id,
                                     OAuthToken.revoked_at.is_(None))
    if app_id is not None:
        query = query.where(OAuthToken.app_id == app_id)
    result = await session.execute(query.values(revoked_at=time.time()))
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class AuthorisedApp:
    """An app holding at least one live token for a person."""

    app_id: int
    name: str
    website: str | None
    scopes: str
    authorised_at: float
    last_used_at: float | None


async def authorised_apps(session: AsyncSession, actor_id: int) -> list[AuthorisedApp]:
    moment = time.time()
    rows = (await session.execute(
        select(OAuthApp, OAuthToken).join(OAuthToken, OAuthToken.app_id == OAuthApp.id)
        .where(OAuthToken.actor_id == actor_id, OAuthToken.revoked_at.is_(None),
               or_(OAuthToken.expires_at.is_(None), OAuthToken.expires_at > moment))
        .order_by(OAuthApp.id, OAuthToken.id)
    )).all()
    found: dict[int, AuthorisedApp] = {}
    for app, token in rows:
        seen = found.get(app.id)
        scopes = set(token.scopes.split()) | set((seen.scopes if seen else "").split())
        used = [t for t in (token.last_used_at, seen.last_used_at if seen else None) if t]
        found[app.id] = AuthorisedApp(
            app.id, app.name, app.website, scope_rules.text(scopes),
            min(token.created_at, seen.authorised_at) if seen else token.created_at,
            max(used) if used else None)
    return sorted(found.values(), key=lambda a: -(a.last_used_at or a.authorised_at))


async def live_tokens(session: AsyncSession, actor_id: int) -> int:
    return int((await session.execute(select(func.count()).select_from(OAuthToken).where(
        OAuthToken.actor_id == actor_id, OAuthToken.revoked_at.is_(None)))).scalar_one())


async def password_grant_enabled(session: AsyncSession) -> bool:
    """Whether apps may trade a person's password for a token (on unless the admin turned
    it off: bots and scripts use it; Mastodon 4.4 dropped it)."""
    row = await session.get(InstanceSetting, _GRANT_SWITCH_KEY)
    return row is None or row.value != "off"


async def set_password_grant(session: AsyncSession, enabled: bool) -> None:
    value = "on" if enabled else "off"
    row = await session.get(InstanceSetting, _GRANT_SWITCH_KEY)
    if row is None:
        session.add(InstanceSetting(key=_GRANT_SWITCH_KEY, value=value))
    else:
        row.value = value


async def grant_types(session: AsyncSession) -> list[str]:
    """The grants the token endpoint takes now (the metadata lists exactly these)."""
    types = ["authorization_code", "client_credentials", "refresh_token"]
    if await password_grant_enabled(session):
        types.append("password")
    return types
