"""Buttons for a person of ours who moderates a group on another server: remove a post,
lock or pin a thread. The activity goes to the group's server (groups/remote_mod.py), which
applies it and tells its members, this server among them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedi.errors import FediError, ValidationError
from fedi.groups.remote_mod import ACTIONS, act_on_remote_post
from fedi.groups.viewers import facts_for, viewer_for
from fedi.privacy.access import can_view
from fedi.store.models import Post
from fedi.web.auth import checked_form, current_user, render, require_login
from fedi.web.auth import services_of as _services

MAX_REASON = 1000


def _local_path(raw: object, default: str) -> str:
    """Where to go back to: a path on this site only, never an open redirect."""
    if isinstance(raw, str) and raw.startswith("/") and not raw.startswith("//") \
            and "\\" not in raw:
        return raw
    return default


@require_login
async def remote_moderate(request: Request) -> Response:
    person = await current_user(request)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    action = form.get("action")
    reason = form.get("reason")
    services = _services(request)
    try:
        if person is None or not isinstance(action, str) or action not in ACTIONS:
            raise ValidationError("that is not a moderation action")
        if isinstance(reason, str) and len(reason) > MAX_REASON:
            raise ValidationError(f"the reason is longer than {MAX_REASON} characters")
        async with services.sessionmaker() as session, session.begin():
            post = await session.get(Post, request.path_params["post_id"])
            if post is None or not can_view(await facts_for(session, post),
                                            await viewer_for(session, person.uri)):
                raise ValidationError("there is no such post")
            await act_on_remote_post(
                session, services.urls, await session.merge(person), post, action,
                reason if isinstance(reason, str) else None,
            )
            back = f"/remote/posts/{post.id}"
    except FediError as exc:
        return await render(request, "message.html", {
            "heading": "Not sent", "text": f"Nothing was changed: {exc.reason}."},
            status=404 if exc.reason == "there is no such post" else 400)
    # The group's server decides; its answer reaches this page when it arrives.
    return RedirectResponse(_local_path(form.get("next"), back), status_code=303)


routes = [
    Route("/posts/{post_id:int}/remote-moderation", remote_moderate, methods=["POST"]),
]
