"""The invite link page: a person names their account, then follows the group from it.

Mastodon and most servers cannot attach an invite to a Follow, so the link itself admits the
account named here; the Follow that follows is accepted (fedi.groups.invites.redeem).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.errors import FediError
from fedi.groups.invites import find_invite, redeem_on_web, usable
from fedi.services import Services
from fedi.store.models import Actor, Group, now
from fedi.urls import GROUPS
from fedi.web.auth import current_user
from fedi.web.negotiation import not_found
from fedi.web.templating import templates

MAX_FORM_BYTES = 4096


async def invite_page(request: Request) -> Response:
    services: Services = request.app.state.services
    uri = services.urls.group(request.path_params["name"])
    token = request.path_params["token"]
    async with services.sessionmaker() as session:
        group = (
            await session.execute(select(Actor).where(Actor.uri == uri, Actor.local))
        ).scalar_one_or_none()
        invite = await find_invite(session, group, token) if group else None
        config = await session.get(Group, group.id) if group else None
    if group is None or invite is None or config is None:
        return not_found()
    context = {
        "group": group, "handle": f"@{group.username}@{services.settings.domain}",
        "rules": json.loads(config.rules or "[]"), "settings": services.settings,
        "valid": usable(invite, now()), "error": None, "done": None,
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
    context["user"] = await current_user(request)
    return templates.TemplateResponse(request, "invite.html", context, status_code=status)


routes = [
    Route(f"/{GROUPS}/{{name:str}}/invite/{{token:str}}", invite_page, methods=["GET", "POST"]),
]
