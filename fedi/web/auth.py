"""Sign-in state and CSRF for every page and form.

- `current_user(request)`: the signed-in local Person, or None (looked up once per request).
- `require_login`: a route decorator; not signed in (or an expired session) → /login with a
  message and a way back.
- `csrf_token(request)` for templates, and `checked_form(request)` for every POST: the
  form's token must match the one bound to this browser's session (or, before sign-in, to
  its pre-login cookie), and Origin / Sec-Fetch-Site must not say another site sent it.
  A failure is a 403 page that says so; the handler never runs.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from fedi.accounts import sessions
from fedi.accounts.passwords import Hasher
from fedi.accounts.tokens import derived, new_token
from fedi.config import Settings
from fedi.groups.notices import unread_count
from fedi.services import Services
from fedi.store.models import Actor, User
from fedi.web.templating import templates

SESSION_COOKIE = "fedi_session"
PRE_COOKIE = "fedi_pre"  # before sign-in: binds the login and sign-up forms' CSRF token
MAX_FORM_BYTES = 64 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def hasher_for(settings: Settings) -> Hasher:
    return Hasher(time_cost=settings.password_time_cost,
                  memory_kib=settings.password_memory_kib)


def client_address(request: Request, trusted: tuple[str, ...]) -> str:
    """The address that sent the request. X-Forwarded-For is read only when the peer is a
    trusted proxy, from the right, skipping further trusted proxies: the left-most entries
    are whatever the client wrote."""
    peer = request.client.host if request.client else "unknown"
    if not trusted:
        return peer
    networks = [ipaddress.ip_network(n) for n in trusted]

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    if not is_trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


async def _signed_in(request: Request) -> sessions.SignedIn | None:
    if "signed_in" not in request.state._state:
        raw = request.cookies.get(SESSION_COOKIE)
        found = None
        if raw:
            async with services_of(request).sessionmaker() as session, session.begin():
                found = await sessions.find(session, raw)
                # For the header of every page (templating.unread_notifications).
                request.state.unread_notifications = (
                    await unread_count(session, found.actor.id) if found else 0)
                # For the header's Admin link (templating.is_admin); the admin pages ask again.
                account = await session.get(User, found.actor.id) if found else None
                request.state.is_admin = bool(account is not None and account.is_admin)
        request.state.signed_in = found
        request.state.session_raw = raw if found else None
    result: sessions.SignedIn | None = request.state.signed_in
    return result


async def current_user(request: Request) -> Actor | None:
    found = await _signed_in(request)
    return found.actor if found else None


async def current_session_id(request: Request) -> int | None:
    found = await _signed_in(request)
    return found.session_id if found else None


def require_login(handler: Handler) -> Handler:
    @wraps(handler)
    async def guarded(request: Request) -> Response:
        if await current_user(request) is None:
            why = "expired" if request.cookies.get(SESSION_COOKIE) else "login"
            target = quote(request.url.path, safe="/")
            response = RedirectResponse(f"/login?next={target}&m={why}", status_code=303)
            if why == "expired":
                response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        return await handler(request)

    return guarded


async def csrf_token(request: Request) -> str:
    await _signed_in(request)
    raw = request.state.session_raw or request.cookies.get(PRE_COOKIE)
    if not raw:
        raw = request.state._state.get("new_pre")
        if raw is None:
            raw, _ = new_token()
            request.state.new_pre = raw
    return derived(raw, "csrf")


def _cross_site(request: Request) -> str | None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return "the form was sent from another site"
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        ours = urlsplit(services_of(request).settings.base_url)
        theirs = urlsplit(origin)
        if (theirs.scheme, theirs.netloc.lower()) != (ours.scheme, ours.netloc.lower()):
            return "the form was sent from another site"
    return None


async def checked_form(
    request: Request, max_bytes: int = MAX_FORM_BYTES
) -> FormData | Response:
    """The POSTed form if it carries this browser's CSRF token, else the 403 page."""
    reason = _cross_site(request)
    if reason is None:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            return await render(request, "message.html", {
                "heading": "Too large", "text": "the form is too large"}, status=413)
        form = await request.form(max_part_size=max_bytes)
        sent = form.get("csrf")
        await _signed_in(request)
        # Only a cookie the browser sent binds a token: never one made up for this request.
        expected = await csrf_token(request) if (
            request.state.session_raw or request.cookies.get(PRE_COOKIE)) else None
        if not isinstance(sent, str) or not sent:
            reason = "the form had no security token"
        elif expected is None or not hmac.compare_digest(sent, expected):
            reason = ("the form's security token does not match your session (it was forged, "
                      "or your session changed): go back, reload the page and try again")
        else:
            return form
    return await render(request, "message.html", {
        "heading": "Form refused", "text": f"Nothing was changed: {reason}."}, status=403)


def set_cookie(response: Response, settings: Settings, name: str, value: str,
               max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=settings.scheme == "https")


async def render(request: Request, name: str, context: dict[str, Any],
                 status: int = 200) -> Response:
    """A page with what every page needs: the signed-in user, the CSRF token, settings."""
    settings = services_of(request).settings
    token = await csrf_token(request)
    response = templates.TemplateResponse(request, name, {
        "user": await current_user(request), "csrf": token, "settings": settings, **context,
    }, status_code=status)
    new_pre = request.state._state.get("new_pre")
    if new_pre:
        set_cookie(response, settings, PRE_COOKIE, new_pre, max_age=None)
    return response


def not_found() -> HTTPException:
    return HTTPException(404)
