"""The invite link page: a person names their account, then follows the group from it.

Mastodon and most servers cannot attach an invite to a Follow, so the link itself admits the
account named here; the Follow that follows is accepted (fedi.groups.invites.redeem).
Someone signed in here joins at once with the invite (groups.membership.join_local_group).
Naming an account is not CSRF-checked: anyone may name any account, signed in or not; the
signed-in join is.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedi.errors import FediError
from fedi.groups.invites import find_invite, redeem_on_web, usable
from fedi.groups.membership import join_local_group
from fedi.services import Services
from fedi.store.models import Actor, Group, now
from fedi.urls import GROUPS
from fedi.web.auth import checked_form, current_user, render, require_login
from fedi.web.negotiation import not_found

MAX_FORM_BYTES = 4096


async def _found(request: Request) -> tuple[Actor, Group, bool] | None:
    """The group, its settings and whether the invite in the path can still be used."""
    services: Services = request.app.state.services
    uri = services.urls.group(request.path_params["name"])
    async with services.sessionmaker() as session:
        group = (
            await session.execute(select(Actor).where(Actor.uri == uri, Actor.local))
        ).scalar_one_or_none()
        invite = await find_invite(session, group, request.path_params["token"]) if group else None
        config = await session.get(Group, group.id) if group else None
    if group is None or invite is None or config is None:
        return None
    return group, config, usable(invite, now())


async def invite_page(request: Request) -> Response:
    services: Services = request.app.state.services
    token = request.path_params["token"]
    found = await _found(request)
    if found is None:
        return not_found()
    group, config, valid = found
    context = {
        "group": group, "handle": f"@{group.username}@{services.settings.domain}",
        "rules": json.loads(config.rules or "[]"), "settings": services.settings,
        "valid": valid, "error": None, "done": None, "token": token,
    }
    if request.method == "POST" and context["valid"]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return Response("form too large", status_code=413)
        form = parse_qs(body.decode("utf-8", errors="replace"))
        account = (form.get("account") or [""])[0].strip()
        try:
            if not account:
                raise FediError("give your account, like @you@your.server")
            async with services.sessionmaker() as session, session.begin():
                actor = await services.resolver.resolve_handle(session, account)
                await redeem_on_web(session, group, token, actor)
            context["done"] = account
        except FediError as exc:
            context["error"] = exc.reason
    status = 200 if context["valid"] and not context["error"] else 400
    if not context["valid"]:
        status = 410
    return await render(request, "invite.html", context, status=status)


@require_login
async def join_with_invite(request: Request) -> Response:
    """The signed-in person joins the group with this invite, through the one membership
    flow (the invite is used up as a Follow carrying it would use it)."""
    services: Services = request.app.state.services
    found = await _found(request)
    if found is None:
        return not_found()
    group, _, _ = found
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    person = await current_user(request)
    if person is None:
        return not_found()
    try:
        async with services.sessionmaker() as session, session.begin():
            await join_local_group(session, services.urls, group, await session.merge(person),
                                   invite=request.path_params["token"])
    except FediError as exc:
        return await render(request, "message.html", {
            "heading": "Not joined", "text": f"Nothing was changed: {exc.reason}."},
            status=400)
    return RedirectResponse(group.uri, status_code=303)


routes = [
    Route(f"/{GROUPS}/{{name:str}}/invite/{{token:str}}", invite_page, methods=["GET", "POST"]),
    Route(f"/{GROUPS}/{{name:str}}/invite/{{token:str}}/join", join_with_invite,
          methods=["POST"]),
]
