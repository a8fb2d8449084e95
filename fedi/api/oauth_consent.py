"""GET/POST /oauth/authorize: the consent page in the site's layout (RFC 6749 §4.1).

What is wrong with the app itself (unknown client_id, a redirect URI it never registered) is
said on a page here and never sent anywhere: redirecting to an unchecked URI would make this
server an open redirector. Once the URI is known to be the app's, the other errors go back to
the app as `?error=...&state=...`, as OAuth clients expect (the out-of-band URI gets a page).

The site's Content-Security-Policy has `form-action 'self'`, and Chrome applies it to the
redirect that follows the consent form's POST: the consent page sends its own policy that
also allows the app's redirect origin (the security-headers middleware keeps a policy the
response already has).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.accounts import oauth, oauth_grants
from fedi.accounts import scopes as scope_rules
from fedi.errors import FediError
from fedi.store.models import OAuthApp
from fedi.web.auth import checked_form, current_user, render, services_of
from fedi.web.headers import CONTENT_SECURITY_POLICY

FIELDS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
          "code_challenge_method")
MAX_FIELD = 2048
ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
SCOPE_WORDS = {
    "read": "read what your account can see: your home feed, groups, posts, notifications, "
            "bookmarks and profile",
    "write": "act as you: post, reply, edit and delete your posts, like, bookmark, and "
             "change your profile",
    "follow": "join and leave groups, follow people, and block or mute accounts",
    # Asked for by most apps; granting it changes nothing here (no Web Push is offered).
    "push": "push notifications, which this server does not send: the app gets updates "
            "while it is open instead",
    "profile": "know who you are (your name and profile) and nothing else",
}


def describe(scope: str) -> str:
    if scope in SCOPE_WORDS:
        return SCOPE_WORDS[scope]
    kind, _, what = scope.partition(":")
    return f"{'read' if kind == 'read' else 'change'} your {what.replace('_', ' ')}"


@dataclass(frozen=True)
class Asked:
    """A checked authorization request: the app, where to send the answer, what it wants."""

    app: OAuthApp
    redirect_uri: str
    scopes: frozenset[str]
    state: str | None
    challenge: str | None


class Refused(FediError):
    """`back_to` is set when the answer may go to the app's (registered) redirect URI."""

    def __init__(self, error: str, reason: str, back_to: tuple[str, str | None] | None = None
                 ) -> None:
        super().__init__(reason)
        self.error = error
        self.back_to = back_to


async def _check(session: AsyncSession, values: Mapping[str, str]) -> Asked:
    app = await oauth.find_app(session, values.get("client_id"))
    if app is None:
        raise Refused("invalid_client", "This sign-in link names an app that is not "
                      "registered here (its client_id is unknown). Go back to the app and "
                      "start again; it may need to register anew.")
    registered = oauth.redirect_uris_of(app)
    uri = values.get("redirect_uri") or (registered[0] if len(registered) == 1 else "")
    if uri not in registered:
        raise Refused("invalid_request", f"The app “{app.name}” asked to send you back to an "
                      "address it did not register, so this sign-in was stopped. The app "
                      "must use one of its registered redirect URIs.")
    state = values.get("state") or None
    back = (uri, state) if uri != oauth.OOB else None
    if values.get("response_type") != "code":
        raise Refused("unsupported_response_type", "response_type must be code", back)
    try:
        scopes = oauth.granted_scopes(app, values.get("scope"))
        challenge = oauth_grants.check_challenge(values.get("code_challenge"),
                                                 values.get("code_challenge_method"))
    except oauth.OAuthError as exc:
        raise Refused(exc.error, exc.reason, back) from None
    return Asked(app, uri, scopes, state, challenge)


def _values(source: Mapping[str, object]) -> dict[str, str]:
    return {name: value[:MAX_FIELD] for name in FIELDS
            if isinstance(value := source.get(name), str)}


def back_to_app(uri: str, **answer: str | None) -> RedirectResponse:
    query = urlencode({k: v for k, v in answer.items() if v is not None})
    joiner = "&" if urlsplit(uri).query else ("" if uri.endswith("?") else "?")
    return RedirectResponse(f"{uri}{joiner}{query}", status_code=303)


def form_action(redirect_uri: str) -> str:
    """The consent page's policy: this site, plus where the form's redirect goes."""
    parts = urlsplit(redirect_uri)
    target = None
    if parts.scheme in ("http", "https"):
        origin = f"{parts.scheme}://{parts.netloc}"
        target = origin if ORIGIN_RE.fullmatch(origin) else None
    elif redirect_uri != oauth.OOB and re.fullmatch(r"[a-z][a-z0-9+.-]*", parts.scheme):
        target = f"{parts.scheme}:"
    allowed = f"form-action 'self' {target}" if target else "form-action 'self'"
    return CONTENT_SECURITY_POLICY.replace("form-action 'self'", allowed)


def _to_login(request: Request, values: Mapping[str, str]) -> RedirectResponse:
    again = f"/oauth/authorize?{urlencode(values)}"
    return RedirectResponse(f"/login?next={quote(again, safe='')}&m=login", status_code=303)


async def _refusal(request: Request, refused: Refused) -> Response:
    if refused.back_to is not None:
        uri, state = refused.back_to
        return back_to_app(uri, error=refused.error, error_description=refused.reason,
                           state=state)
    return await render(request, "oauth_error.html", {"reason": refused.reason}, status=400)


async def authorize_page(request: Request) -> Response:
    values = _values(request.query_params)
    try:
        async with services_of(request).sessionmaker() as session:
            asked = await _check(session, values)
    except Refused as refused:
        return await _refusal(request, refused)
    user = await current_user(request)
    forced = request.query_params.get("force_login", "").lower() in ("1", "true", "yes", "on")
    if user is None or forced:
        return _to_login(request, values)
    response = await render(request, "oauth_authorize.html", {
        "app": asked.app, "person": user, "fields": values,
        "scopes": [(s, describe(s)) for s in scope_rules.text(asked.scopes).split()],
        "oob": asked.redirect_uri == oauth.OOB,
        "redirect_host": urlsplit(asked.redirect_uri).netloc
        if asked.redirect_uri.startswith(("https://", "http://")) else asked.redirect_uri,
    })
    response.headers["Content-Security-Policy"] = form_action(asked.redirect_uri)
    response.headers["Cache-Control"] = "no-store"
    return response


async def authorize_submit(request: Request) -> Response:
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    values = _values(form)
    user = await current_user(request)
    if user is None:
        return _to_login(request, values)
    services = services_of(request)
    try:
        async with services.sessionmaker() as session, session.begin():
            asked = await _check(session, values)
            if form.get("decision") != "allow":
                raise Refused("access_denied", f"{user.username} did not authorise the app",
                              (asked.redirect_uri, asked.state)
                              if asked.redirect_uri != oauth.OOB else None)
            code = await oauth_grants.issue_code(session, asked.app, user.id, asked.scopes,
                                                 asked.redirect_uri, asked.challenge)
    except Refused as refused:
        if refused.error == "access_denied" and refused.back_to is None:
            return await render(request, "message.html", {
                "heading": "Not authorised",
                "text": "You did not authorise the app; it got no access to your account."})
        return await _refusal(request, refused)
    if asked.redirect_uri == oauth.OOB:
        response = await render(request, "oauth_code.html", {"app": asked.app, "code": code})
        response.headers["Cache-Control"] = "no-store"
        return response
    return back_to_app(asked.redirect_uri, code=code, state=asked.state)


routes: list[BaseRoute] = [
    Route("/oauth/authorize", authorize_page, methods=["GET"]),
    Route("/oauth/authorize", authorize_submit, methods=["POST"]),
]
