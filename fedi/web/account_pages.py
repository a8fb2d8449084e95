"""Account pages: sign up, log in and out, settings (profile, avatar, password, sessions,
two-factor), password reset and e-mail verification. Thin: fedi.accounts decides."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from fedi.accounts import (
    avatars,
    login,
    oauth,
    profile,
    recovery,
    registration,
    sessions,
    totp,
)
from fedi.accounts.mail import Mailer
from fedi.accounts.throttle import Limits
from fedi.activitypub.actors import actor_document
from fedi.actors.documents import view_of
from fedi.content import html_to_text
from fedi.errors import FediError, ValidationError
from fedi.services import Services
from fedi.store.models import Account, Actor
from fedi.web.auth import (
    PRE_COOKIE,
    SESSION_COOKIE,
    checked_form,
    client_address,
    current_session_id,
    current_user,
    hasher_for,
    render,
    require_login,
    services_of,
    set_cookie,
)

log = logging.getLogger("fedi.accounts")
LIMITS = Limits()
MESSAGES = {
    "login": "Log in to continue.",
    "expired": "Your session has expired or was ended: log in again.",
    "loggedout": "You are logged out.",
    "reset": "Your password was changed: log in with the new one.",
    "pending": "Thank you: an admin will read your application. You can log in once it is "
               "approved.",
    "saved": "Your changes are saved.",
    "password": "Your password is changed.",
    "totp": "Two-factor login is updated.",
}


def _text(form: FormData, name: str, limit: int = 4096) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _next(raw: str) -> str:
    """Only a path on this site: never an open redirect."""
    parts = urlsplit(raw)
    if raw.startswith("/") and not raw.startswith("//") and not parts.scheme and "\\" not in raw:
        return raw
    return "/"


def _mailer(request: Request) -> Mailer | None:
    settings = services_of(request).settings
    if not settings.smtp_url:
        return None
    host = urlsplit(settings.base_url).hostname
    return Mailer(settings.smtp_url, settings.smtp_from or f"fedi@{host}")


def _document(services: Services) -> profile.Document:
    """The actor document as served at the actor's URL: the body of its Update."""
    return lambda actor: actor_document(view_of(actor, services.urls))


async def login_page(request: Request) -> Response:
    message = MESSAGES.get(request.query_params.get("m", ""))
    return await render(request, "login.html", {
        "message": message, "next": _next(request.query_params.get("next", "/")),
        "username": "", "ask_code": False, "error": None})


async def login_submit(request: Request) -> Response:
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    services = services_of(request)
    settings = services.settings
    attempt = login.Attempt(
        username=_text(form, "username", 255), password=_text(form, "password", 2048),
        address=client_address(request, settings.trusted_proxies),
        user_agent=request.headers.get("user-agent"), code=_text(form, "code", 16) or None,
    )
    target = _next(_text(form, "next", 2048) or "/")
    try:
        async with services.sessionmaker() as session:
            try:
                actor, token = await login.log_in(
                    session, hasher_for(settings), attempt, LIMITS, settings.session_days)
            finally:
                await session.commit()  # the failure counts, or the new session
    except login.LoginRefused as refused:
        return await render(request, "login.html", {
            "error": refused.reason, "username": attempt.username, "next": target,
            "ask_code": refused.needs_code, "message": None}, status=400
            if not refused.reason.startswith("too many") else 429)
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, settings, SESSION_COOKIE, token, max_age=settings.session_days * 86_400)
    response.delete_cookie(PRE_COOKIE, path="/")
    log.info("user %s logged in", actor.username)
    return response


async def logout(request: Request) -> Response:
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        async with services_of(request).sessionmaker() as session, session.begin():
            await sessions.end(session, raw)
    response = RedirectResponse("/login?m=loggedout", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def signup_page(request: Request) -> Response:
    async with services_of(request).sessionmaker() as session:
        mode = await registration.get_mode(session)
    return await render(request, "signup.html", {
        "mode": mode, "error": None, "form": {"invite": request.query_params.get("invite", "")}})


async def signup_submit(request: Request) -> Response:
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    services = services_of(request)
    application = registration.Application(
        username=_text(form, "username", 255), password=_text(form, "password", 2048),
        email=_text(form, "email", 320) or None, reason=_text(form, "reason", 4000) or None,
        invite=_text(form, "invite", 200) or None,
    )
    mode = "closed"
    try:
        async with services.sessionmaker() as session, session.begin():
            mode = await registration.get_mode(session)
            actor, account = await registration.sign_up(
                session, services.urls, hasher_for(services.settings), application)
            mailer = _mailer(request)
            verify = (await recovery.issue(session, actor.id, "verify")
                      if mailer and account.email else None)
    except ValidationError as exc:
        return await render(request, "signup.html", {
            "mode": mode, "error": exc.reason,
            "form": {"username": application.username, "email": application.email or "",
                     "reason": application.reason or "", "invite": application.invite or ""},
        }, status=400)
    log.info("user %s signed up (%s)", actor.username, mode)
    if mailer and account.email and verify:
        await _send(mailer, account.email, "Confirm your e-mail address",
                    f"Open this link to confirm your address for {actor.username}:\n\n"
                    f"{services.settings.base_url}/verify-email/{verify}\n")
    return RedirectResponse("/login?m=" + ("pending" if mode == "approval" else "login"),
                            status_code=303)


async def _send(mailer: Mailer, to: str, subject: str, body: str) -> None:
    try:
        await mailer.send(to, subject, body)
    except FediError as exc:
        log.warning("%s", exc.reason)


async def settings_page(request: Request) -> Response:
    return await _require_settings(request)


async def _settings(request: Request, error: str | None = None, done: str | None = None,
                        status: int = 200, totp_secret: str | None = None) -> Response:
    services = services_of(request)
    user = await current_user(request)
    assert user is not None
    async with services.sessionmaker() as session:
        account = await session.get(Account, user.id)
        listed = await sessions.listed(session, user.id)
    secret = totp_secret or (None if account and account.totp_secret else totp.new_secret())
    return await render(request, "settings.html", {
        "account": account, "sessions": listed, "this_session": await current_session_id(request),
        "error": error, "done": done or MESSAGES.get(request.query_params.get("m", "")),
        "new_secret": secret, "bio": html_to_text(user.summary or ""),
        "otpauth": totp.uri(secret, f"{user.username}@{services.settings.domain}",
                            services.settings.instance_name) if secret else None,
    }, status=status)


@require_login
async def _require_settings(request: Request) -> Response:
    return await _settings(request)


async def _settings_form(request: Request) -> tuple[FormData, Actor] | Response:
    """The signed-in person's checked form (CSRF, origin), or where to send them instead."""
    user = await current_user(request)
    if user is None:
        return RedirectResponse("/login?m=expired", status_code=303)
    form = await checked_form(request)
    return form if isinstance(form, Response) else (form, user)


async def save_profile(request: Request) -> Response:
    checked = await _settings_form(request)
    if isinstance(checked, Response):
        return checked
    form, user = checked
    services = services_of(request)
    try:
        async with services.sessionmaker() as session, session.begin():
            await profile.update_profile(
                session, services.urls, _document(services), user.id,
                _text(form, "display_name", 2000), _text(form, "bio", 10_000))
    except ValidationError as exc:
        return await _settings(request, error=exc.reason, status=400)
    return RedirectResponse("/settings?m=saved", status_code=303)


async def save_avatar(request: Request) -> Response:
    if await current_user(request) is None:
        return RedirectResponse("/login?m=expired", status_code=303)
    # Uploads are larger than other forms: read with their own bound.
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > avatars.MAX_BYTES + 64 * 1024:
        return await _settings(request, error=avatars.TOO_LARGE, status=413)
    form = await _upload_form(request)
    if isinstance(form, Response):
        return form
    services = services_of(request)
    user = await current_user(request)
    assert user is not None
    upload = form.get("avatar")
    data = await upload.read(avatars.MAX_BYTES + 1) if isinstance(upload, UploadFile) else b""
    try:
        stored = avatars.store(Path(services.settings.media_dir), data)
        async with services.sessionmaker() as session, session.begin():
            await profile.set_avatar(session, services.urls, _document(services), user.id,
                                     stored)
    except ValidationError as exc:
        return await _settings(request, error=exc.reason, status=400)
    return RedirectResponse("/settings?m=saved", status_code=303)


async def _upload_form(request: Request) -> FormData | Response:
    return await checked_form(request, max_bytes=avatars.MAX_BYTES + 64 * 1024)


async def change_password(request: Request) -> Response:
    checked = await _settings_form(request)
    if isinstance(checked, Response):
        return checked
    form, user = checked
    services = services_of(request)
    keep = await current_session_id(request)
    assert keep is not None
    try:
        async with services.sessionmaker() as session, session.begin():
            await login.change_password(
                session, hasher_for(services.settings), user, _text(form, "current", 2048),
                _text(form, "new", 2048), keep)
    except ValidationError as exc:
        return await _settings(request, error=exc.reason, status=400)
    return RedirectResponse("/settings?m=password", status_code=303)


async def logout_everywhere(request: Request) -> Response:
    checked = await _settings_form(request)
    if isinstance(checked, Response):
        return checked
    _, user = checked
    async with services_of(request).sessionmaker() as session, session.begin():
        await sessions.end_all(session, user.id)
        await oauth.revoke_for_person(session, user.id)  # apps too (said on the page)
    response = RedirectResponse("/login?m=loggedout", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def totp_enable(request: Request) -> Response:
    checked = await _settings_form(request)
    if isinstance(checked, Response):
        return checked
    form, user = checked
    secret = _text(form, "secret", 64)
    async with services_of(request).sessionmaker() as session, session.begin():
        account = await session.get(Account, user.id)
        if account is None:
            return await _settings(request, error="set a password first", status=400)
        if not _is_secret(secret) or not totp.verify(secret, _text(form, "code", 16)):
            return await _settings(
                request, error="the code is wrong: two-factor login was not turned on",
                status=400, totp_secret=secret if _is_secret(secret) else None)
        account.totp_secret = secret
    return RedirectResponse("/settings?m=totp", status_code=303)


def _is_secret(secret: str) -> bool:
    return len(secret) == 32 and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in secret)


async def totp_disable(request: Request) -> Response:
    checked = await _settings_form(request)
    if isinstance(checked, Response):
        return checked
    form, user = checked
    services = services_of(request)
    async with services.sessionmaker() as session, session.begin():
        account = await session.get(Account, user.id)
        if account is None or not hasher_for(services.settings).verify(
                account.password_hash, _text(form, "current", 2048)):
            return await _settings(request, error="the current password is wrong",
                                       status=400)
        account.totp_secret = None
    return RedirectResponse("/settings?m=totp", status_code=303)


async def reset_request_page(request: Request) -> Response:
    return await render(request, "reset.html", {
        "stage": "ask", "error": None, "done": None,
        "mail": bool(services_of(request).settings.smtp_url)})


async def reset_request(request: Request) -> Response:
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    mailer = _mailer(request)
    services = services_of(request)
    if mailer is not None:
        async with services.sessionmaker() as session, session.begin():
            found = await recovery.account_for_reset(session, _text(form, "who", 320))
            token = await recovery.issue(session, found[0].id, "reset") if found else None
        if found and token and found[1].email:
            await _send(mailer, found[1].email, "Reset your password",
                        f"Someone (we hope you) asked to reset the password of "
                        f"{found[0].username}. This link works once, for one hour:\n\n"
                        f"{services.settings.base_url}/reset/{token}\n")
    # The same answer whether or not the account exists: the page tells no one who is here.
    return await render(request, "reset.html", {
        "stage": "ask", "error": None, "mail": mailer is not None,
        "done": "If that account has a confirmed e-mail address, a reset link is on its way."})


async def reset_page(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        async with services_of(request).sessionmaker() as session:
            actor = await recovery.check_reset(session, token)
    except ValidationError as exc:
        return await render(request, "message.html", {
            "heading": "Reset link", "text": exc.reason}, status=400)
    return await render(request, "reset.html", {
        "stage": "set", "token": token, "username": actor.username, "error": None,
        "done": None, "mail": True})


async def reset_submit(request: Request) -> Response:
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    services = services_of(request)
    token = request.path_params["token"]
    try:
        async with services.sessionmaker() as session, session.begin():
            await recovery.reset(session, hasher_for(services.settings), token,
                                 _text(form, "new", 2048))
    except ValidationError as exc:
        return await render(request, "reset.html", {
            "stage": "set", "token": token, "error": exc.reason, "done": None, "mail": True,
            "username": ""}, status=400)
    return RedirectResponse("/login?m=reset", status_code=303)


async def verify_email(request: Request) -> Response:
    try:
        async with services_of(request).sessionmaker() as session, session.begin():
            actor = await recovery.verify_email(session, request.path_params["token"])
    except ValidationError as exc:
        return await render(request, "message.html", {
            "heading": "E-mail address", "text": exc.reason}, status=400)
    return await render(request, "message.html", {
        "heading": "E-mail address", "text": f"Confirmed: {actor.username}'s address."})


async def avatar_file(request: Request) -> Response:
    name = request.path_params["name"]
    found = avatars.path_of(Path(services_of(request).settings.media_dir), name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    path, media_type = found
    return FileResponse(path, media_type=media_type, headers={
        "Cache-Control": "public, max-age=86400", "Content-Disposition": "inline"})


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/signup", signup_page, methods=["GET"]),
    Route("/signup", signup_submit, methods=["POST"]),
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings/profile", save_profile, methods=["POST"]),
    Route("/settings/avatar", save_avatar, methods=["POST"]),
    Route("/settings/password", change_password, methods=["POST"]),
    Route("/settings/logout-everywhere", logout_everywhere, methods=["POST"]),
    Route("/settings/totp", totp_enable, methods=["POST"]),
    Route("/settings/totp/disable", totp_disable, methods=["POST"]),
    Route("/reset", reset_request_page, methods=["GET"]),
    Route("/reset", reset_request, methods=["POST"]),
    Route("/reset/{token}", reset_page, methods=["GET"]),
    Route("/reset/{token}", reset_submit, methods=["POST"]),
    Route("/verify-email/{token}", verify_email, methods=["GET"]),
    Route("/media/avatars/{name}", avatar_file, methods=["GET"]),
]
