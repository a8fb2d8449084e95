"""/admin/users: list and search local users; suspend, delete with content, reset a
password, make or unmake an admin."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.admin import users
from fedi.admin.acting import Admin
from fedi.errors import ValidationError
from fedi.web.admin_common import admin_form, admin_page, context, text
from fedi.web.auth import render, services_of

BACK = "/admin/users"


@admin_page
async def listing(request: Request, admin: Admin) -> Response:
    search = request.query_params.get("q", "")[:100]
    async with services_of(request).sessionmaker() as session:
        found = await users.list_users(session, search)
    return await render(request, "admin_users.html", context(
        admin, "users", users=found, search=search, limit=users.MAX_LISTED))


async def _act(request: Request, form: FormData, session: AsyncSession,
               admin: Admin) -> tuple[str, str]:
    name, action = request.path_params["name"], request.path_params["action"]
    urls = services_of(request).urls
    if action == "suspend":
        ended = await users.suspend(session, admin, name, text(form, "reason"))
        return f"Suspended {name}; {ended} session(s) ended.", BACK
    if action == "unsuspend":
        await users.unsuspend(session, admin, name)
        return f"{name} may log in again.", BACK
    if action == "delete":
        if text(form, "confirm") != name:
            raise ValidationError(f"type the user name {name!r} to confirm the deletion")
        deleted = await users.delete_with_content(session, urls, admin, name,
                                                  text(form, "reason"))
        return f"Deleted {name} and {deleted} post(s); the deletions are being federated.", BACK
    if action in ("make-admin", "remove-admin"):
        await users.set_admin(session, admin, name, make=action == "make-admin")
        return f"{name} is {'now' if action == 'make-admin' else 'no longer'} an admin.", BACK
    raise ValidationError(f"there is no user action {action!r}")


async def _reset(request: Request, form: FormData, session: AsyncSession,
                 admin: Admin) -> tuple[str, str]:
    actor, token = await users.reset_password(session, admin, request.path_params["name"])
    request.state.secret_link = f"{services_of(request).settings.base_url}/reset/{token}"
    return f"A one-time reset link for {actor.username}, valid for one hour.", BACK


routes = [
    Route("/admin/users", listing),
    Route("/admin/users/{name}/reset-password", admin_form(_reset), methods=["POST"]),
    Route("/admin/users/{name}/{action}", admin_form(_act), methods=["POST"]),
]
