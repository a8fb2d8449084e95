"""OAuth for Mastodon apps: app registration (POST /api/v1/apps), the token and revocation
endpoints (RFC 6749, RFC 7009) and the authorization-server metadata (RFC 8414). The consent
page, /oauth/authorize, is `oauth_consent`.

The token endpoint answers errors in RFC 6749's shape, `{"error", "error_description"}`,
not Mastodon's API shape: that is what OAuth libraries in clients read.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.accounts import oauth, oauth_grants, throttle
from fedi.accounts import scopes as scope_rules
from fedi.api import oauth_consent
from fedi.api.auth import Caller, endpoint, services_of
from fedi.api.errors import ApiError, not_found, unauthorized, unprocessable
from fedi.api.params import Params, read_params
from fedi.errors import ValidationError
from fedi.store.models import OAuthApp
from fedi.web.auth import client_address, hasher_for

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
LIMITS = throttle.Limits()
DOCUMENTATION = "https://docs.joinmastodon.org/client/token/"


def application(app: OAuthApp, *, secret: str | None = None) -> dict[str, Any]:
    """Mastodon's Application entity (CredentialApplication when the secret is given)."""
    uris = oauth.redirect_uris_of(app)
    entity: dict[str, Any] = {
        "id": str(app.id), "name": app.name, "website": app.website,
        "scopes": app.scopes.split(), "redirect_uri": "\n".join(uris), "redirect_uris": uris,
        "vapid_key": "",
    }
    if secret is not None:
        entity.update(client_id=app.client_id, client_secret=secret,
                      client_secret_expires_at=0)
    return entity


@endpoint(None, public=True)
async def create_app(request: Request, caller: Caller) -> Response:
    params = await read_params(request)
    uris = params.strings("redirect_uris") or params.strings("redirect_uri")
    scopes = _scope(params, "scopes")
    async with services_of(request).sessionmaker() as session, session.begin():
        try:
            app, secret = await oauth.register(
                session, name=params.text("client_name", max_length=1000),
                redirect_uris=uris, scopes=scopes,
                website=params.text("website", max_length=4000))
        except ValidationError as exc:
            raise unprocessable(exc.reason) from None
    return JSONResponse(application(app, secret=secret), headers=NO_STORE)


@endpoint(None, person=False)
async def verify_app(request: Request, caller: Caller) -> Response:
    if caller.grant is None:
        raise unauthorized()
    async with services_of(request).sessionmaker() as session:
        app = await session.get(OAuthApp, caller.grant.app_id)
    if app is None:
        raise not_found()
    return JSONResponse(application(app))


def _oauth_error(exc: oauth.OAuthError, *, basic: bool = False) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fedi"' if basic else 'Bearer realm="fedi"'
    return JSONResponse({"error": exc.error, "error_description": exc.reason},
                        status_code=exc.status, headers=headers)


async def _params(request: Request) -> Params:
    try:
        return await read_params(request)
    except ApiError as exc:
        raise oauth.OAuthError("invalid_request", exc.error) from None


def _credentials(request: Request, params: Params) -> tuple[str | None, str | None, bool]:
    """client_id and client_secret from HTTP Basic (RFC 6749 §2.3.1: form-encoded, then
    base64) or the body; and whether Basic was used."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise oauth.OAuthError("invalid_client", "the Basic authorization header is "
                                   "not base64 of client_id:client_secret", 401) from None
        client_id, _, secret = decoded.partition(":")
        body_id = params.text("client_id", max_length=200)
        if body_id is not None and body_id != unquote_plus(client_id):
            raise oauth.OAuthError("invalid_request", "client_id differs between the body "
                                   "and the Basic authorization header")
        return unquote_plus(client_id), unquote_plus(secret), True
    return (params.text("client_id", max_length=200),
            params.text("client_secret", max_length=200), False)


def _token_body(issued: oauth.IssuedToken) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": issued.access_token, "token_type": "Bearer",
        "scope": issued.row.scopes, "created_at": int(issued.row.created_at or time.time()),
    }
    if issued.refresh_token is not None:
        body["refresh_token"] = issued.refresh_token
    return body


ClientCall = Callable[[Request, Params, str | None, str | None], Awaitable[Response]]


def client_endpoint(work: ClientCall) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint an app calls with its client credentials (body or HTTP Basic); OAuth
    errors and malformed parameters answer in RFC 6749's shape."""

    @wraps(work)
    async def run(request: Request) -> Response:
        basic = False
        try:
            params = await _params(request)
            client_id, secret, basic = _credentials(request, params)
            return await work(request, params, client_id, secret)
        except oauth.OAuthError as exc:
            return _oauth_error(exc, basic=basic)
        except ApiError as exc:  # a malformed parameter (a list where a string belongs …)
            return _oauth_error(oauth.OAuthError("invalid_request", exc.error), basic=basic)

    return run


@client_endpoint
async def token(request: Request, params: Params, client_id: str | None,
                secret: str | None) -> Response:
    grant_type = params.text("grant_type", max_length=100)
    if not grant_type:
        raise oauth.OAuthError("invalid_request", "grant_type is required")
    return await _grant(request, params, grant_type, client_id, secret)


async def _grant(request: Request, params: Params, grant_type: str, client_id: str | None,
                 secret: str | None) -> Response:
    services = services_of(request)
    async with services.sessionmaker() as session:
        if grant_type not in await oauth.grant_types(session):
            raise oauth.OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is "
                                   "not supported here; see /.well-known/"
                                   "oauth-authorization-server")
        app = await oauth.authenticate_client(session, client_id, secret)
        if grant_type == "authorization_code":
            issued = await oauth_grants.redeem_code(
                session, app, params.text("code", max_length=512),
                params.text("redirect_uri", max_length=oauth.MAX_URI),
                params.text("code_verifier", max_length=512))
        elif grant_type == "client_credentials":
            issued = await oauth.issue_token(
                session, app, None, oauth.granted_scopes(app, _scope(params)))
        elif grant_type == "refresh_token":
            issued = await oauth.refresh(session, app, params.text("refresh_token",
                                                                   max_length=512),
                                         _scope(params))
        else:
            scopes = oauth.granted_scopes(app, _scope(params))
            attempt = oauth_grants.PasswordAttempt(
                params.text("username", "", max_length=320) or "",
                params.text("password", "", max_length=2048) or "",
                client_address(request, services.settings.trusted_proxies),
                request.headers.get("user-agent"))
            try:
                issued = await oauth_grants.password_grant(
                    session, hasher_for(services.settings), attempt, LIMITS, app, scopes)
            finally:
                await session.commit()  # a failure counts toward the throttle
        body = _token_body(issued)
        await session.commit()
    return JSONResponse(body, headers=NO_STORE)


def _scope(params: Params, name: str = "scope") -> str | None:
    """Scopes as a string, whether sent as one (space- or plus-separated) or as a list."""
    raw = params.raw(name)
    if isinstance(raw, list):
        return " ".join(str(s) for s in raw)
    return params.text(name, max_length=2000)


@client_endpoint
async def revoke(request: Request, params: Params, client_id: str | None,
                 secret: str | None) -> Response:
    raw = params.text("token", max_length=1000)
    if not raw:
        raise oauth.OAuthError("invalid_request", "token is required")
    async with services_of(request).sessionmaker() as session, session.begin():
        app = await oauth.authenticate_client(session, client_id, secret)
        if not await oauth.revoke(session, app, raw):
            raise oauth.OAuthError("unauthorized_client", "You are not authorized to revoke "
                                   "this token: another app holds it", 403)
    return JSONResponse({}, headers=NO_STORE)


async def metadata(request: Request) -> Response:
    """RFC 8414, as Mastodon 4.3 serves it: Mastodon.py reads grant_types_supported before
    it tries the password grant; Phanpy uses PKCE only when S256 is listed."""
    base = services_of(request).settings.base_url
    async with services_of(request).sessionmaker() as session:
        grants = await oauth.grant_types(session)
    return JSONResponse({
        "issuer": f"{base}/",
        "service_documentation": DOCUMENTATION,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "app_registration_endpoint": f"{base}/api/v1/apps",
        "scopes_supported": sorted(scope_rules.KNOWN, key=lambda s: (":" in s, s)),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": grants,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    })


routes: list[BaseRoute] = [
    Route("/api/v1/apps", create_app, methods=["POST"]),
    Route("/api/v1/apps/verify_credentials", verify_app, methods=["GET"]),
    Route("/oauth/token", token, methods=["POST"]),
    Route("/oauth/revoke", revoke, methods=["POST"]),
    Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
    *oauth_consent.routes,
]
