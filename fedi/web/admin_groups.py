"""/admin/groups: list and create local groups; a group's members, settings, owner and
deletion."""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.actors.local import JOIN_POLICIES, PRIVACIES
from fedi.admin import groups
from fedi.admin.acting import Admin
from fedi.errors import FediError, ValidationError
from fedi.store.models import Group
from fedi.web.admin_common import admin_form, admin_page, context, lines, text
from fedi.web.auth import render, services_of


@admin_page
async def listing(request: Request, admin: Admin) -> Response:
    async with services_of(request).sessionmaker() as session:
        found = await groups.list_groups(session)
    return await render(request, "admin_groups.html", context(
        admin, "groups", groups=found, privacies=PRIVACIES, policies=JOIN_POLICIES))


@admin_page
async def one(request: Request, admin: Admin) -> Response:
    async with services_of(request).sessionmaker() as session:
        try:
            group = await groups.group_named(session, request.path_params["name"])
        except FediError:
            raise HTTPException(404) from None
        config = await session.get(Group, group.id)
        found = await groups.members(session, group)
        deleted = await groups.is_deleted(session, group)
    return await render(request, "admin_group.html", context(
        admin, "groups", group=group, config=config, members=found, deleted=deleted,
        rules=json.loads(config.rules) if config else [], policies=JOIN_POLICIES))


async def _create(request: Request, form: FormData, session: AsyncSession,
                  admin: Admin) -> tuple[str, str]:
    group = await groups.create(
        session, services_of(request).urls, admin, text(form, "name"),
        owner=text(form, "owner"), title=text(form, "title"), summary=text(form, "summary"),
        join_policy=text(form, "join") or None, privacy=text(form, "privacy") or "public",
        rules=lines(text(form, "rules")))
    return f"Created the group {group.username}.", f"/admin/groups/{group.username}"


async def _act(request: Request, form: FormData, session: AsyncSession,
               admin: Admin) -> tuple[str, str]:
    name, action = request.path_params["name"], request.path_params["action"]
    back = f"/admin/groups/{name}"
    if action == "edit":
        changed = await groups.edit(
            session, services_of(request).urls, admin, name, title=text(form, "title"),
            summary=text(form, "summary"), rules=lines(text(form, "rules")),
            join_policy=text(form, "join"))
        return (f"Saved: {', '.join(changed)}." if changed else "Nothing had changed."), back
    if action == "transfer":
        person = await groups.transfer(session, admin, name, text(form, "owner"))
        return f"{person.username} owns {name} now; the old owner is a moderator.", back
    if action == "delete":
        if text(form, "confirm") != name:
            raise ValidationError(f"type the group name {name!r} to confirm the deletion")
        ended = await groups.delete_group(session, services_of(request).urls, admin, name,
                                          text(form, "reason"))
        return f"Deleted {name}; {ended} membership(s) ended.", "/admin/groups"
    raise ValidationError(f"there is no group action {action!r}")


routes = [
    Route("/admin/groups", listing),
    Route("/admin/groups", admin_form(_create), methods=["POST"]),
    Route("/admin/groups/{name}", one),
    Route("/admin/groups/{name}/{action}", admin_form(_act), methods=["POST"]),
]
