"""What every /admin page shares: only instance admins get in (a logged-out visitor is sent
to log in, anyone else gets the 403 page), and every form is CSRF-checked, runs in one
transaction with its audit entry, and on bad input changes nothing and says why."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from fedi.admin.acting import Admin, acting, is_admin
from fedi.errors import FediError
from fedi.web.auth import (
    MAX_FORM_BYTES,
    checked_form,
    current_user,
    render,
    require_login,
    services_of,
)

Page = Callable[[Request, Admin], Awaitable[Response]]
# A form's work: returns what was done, in words, and where to go back to.
Work = Callable[[Request, FormData, AsyncSession, Admin], Awaitable[tuple[str, str]]]


async def _admin_or_refusal(request: Request) -> Admin | Response:
    user = await current_user(request)
    assert user is not None  # require_login ran first
    async with services_of(request).sessionmaker() as session:
        allowed = await is_admin(session, user)
    if not allowed:
        return await render(request, "message.html", {
            "heading": "Not allowed",
            "text": "Only the instance's admins may use the admin pages; nothing was changed."},
            status=403)
    return acting(user)


def admin_page(page: Page) -> Callable[[Request], Awaitable[Response]]:
    @require_login
    @wraps(page)
    async def guarded(request: Request) -> Response:
        admin = await _admin_or_refusal(request)
        if isinstance(admin, Response):
            return admin
        return await page(request, admin)

    return guarded


def admin_form(work: Work, max_bytes: int = MAX_FORM_BYTES
               ) -> Callable[[Request], Awaitable[Response]]:
    @require_login
    @wraps(work)
    async def guarded(request: Request) -> Response:
        admin = await _admin_or_refusal(request)
        if isinstance(admin, Response):
            return admin
        form = await checked_form(request, max_bytes)
        if isinstance(form, Response):
            return form
        services = services_of(request)
        try:
            async with services.sessionmaker() as session, session.begin():
                done, back = await work(request, form, session, admin)
        except FediError as exc:  # the transaction rolled back: nothing was changed
            return await render(request, "admin_done.html", {
                "heading": "Nothing was changed", "text": str(exc), "failed": True,
                "back": request.headers.get("referer", "/admin") if _ours(request) else "/admin",
            }, status=400)
        services.domain_policy.invalidate()
        return await render(request, "admin_done.html", {
            "heading": "Done", "text": done, "failed": False, "back": back,
            "secret_link": request.state._state.get("secret_link")})

    return guarded


def _ours(request: Request) -> bool:
    referer = request.headers.get("referer", "")
    base = services_of(request).settings.base_url
    return referer.startswith(base + "/admin")


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def checkbox(form: FormData, name: str) -> bool:
    return form.get(name) in ("on", "1", "true")


def lines(raw: str) -> list[str]:
    return [line.strip() for line in raw.splitlines() if line.strip()]


def context(admin: Admin, section: str, **values: Any) -> dict[str, Any]:
    return {"section": section, "admin": admin, **values}
