"""/admin: instance settings (About page, registration mode) and the approval queue."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.accounts import instance, oauth, registration
from fedi.admin import instance as admin_instance
from fedi.admin.acting import Admin
from fedi.errors import ValidationError
from fedi.web.admin_common import admin_form, admin_page, context, lines, text
from fedi.web.auth import render, services_of


@admin_page
async def home(request: Request, admin: Admin) -> Response:
    async with services_of(request).sessionmaker() as session:
        about = await instance.load(session)
        mode = await registration.get_mode(session)
        waiting = await registration.pending(session)
        password_grant = await oauth.password_grant_enabled(session)
    return await render(request, "admin_home.html", context(
        admin, "instance", about=about, mode=mode, modes=registration.MODES, waiting=waiting,
        password_grant=password_grant))


async def _about(request: Request, form: FormData, session: AsyncSession,
                 admin: Admin) -> tuple[str, str]:
    changed = await admin_instance.update_about(
        session, admin, description=text(form, "description"),
        rules=lines(text(form, "rules")), contact=text(form, "contact"))
    return (f"Saved: {', '.join(changed)}." if changed else "Nothing had changed."), "/admin"


async def _mode(request: Request, form: FormData, session: AsyncSession,
                admin: Admin) -> tuple[str, str]:
    mode = text(form, "mode")
    await admin_instance.set_registrations(session, admin, mode)
    return f"Registrations are {mode} now.", "/admin"


async def _password_grant(request: Request, form: FormData, session: AsyncSession,
                          admin: Admin) -> tuple[str, str]:
    choice = text(form, "password_grant")
    if choice not in ("on", "off"):
        raise ValidationError("choose on or off for the password grant")
    await admin_instance.set_password_grant(session, admin, choice == "on")
    return (f"The password grant is {choice}: apps {'may' if choice == 'on' else 'may not'} "
            "trade a person's password for a token."), "/admin#apps"


async def _approve(request: Request, form: FormData, session: AsyncSession,
                   admin: Admin) -> tuple[str, str]:
    actor = await admin_instance.approve(session, admin, text(form, "name"))
    return f"Approved {actor.username}: they can log in now.", "/admin#registrations"


async def _refuse(request: Request, form: FormData, session: AsyncSession,
                  admin: Admin) -> tuple[str, str]:
    name = text(form, "name")
    await admin_instance.refuse(session, admin, name)
    return f"Refused {name}: the application is removed.", "/admin#registrations"


routes = [
    Route("/admin", home),
    Route("/admin/instance", admin_form(_about), methods=["POST"]),
    Route("/admin/registrations/mode", admin_form(_mode), methods=["POST"]),
    Route("/admin/apps/password-grant", admin_form(_password_grant), methods=["POST"]),
    Route("/admin/registrations/approve", admin_form(_approve), methods=["POST"]),
    Route("/admin/registrations/refuse", admin_form(_refuse), methods=["POST"]),
]
