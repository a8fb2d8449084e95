"""/settings/apps: the apps a signed-in person has authorised (Mastodon clients holding a
token for them), with a button that takes one app's access back (every token it holds for
this person)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedi.accounts import oauth
from fedi.web.auth import checked_form, current_user, render, require_login, services_of

DONE = {"revoked": "The app's access is taken back: it must be authorised again to use "
                   "your account.",
        "none": "That app had no access left."}


@require_login
async def apps_page(request: Request) -> Response:
    user = await current_user(request)
    if user is None:  # require_login let only a signed-in person through
        return RedirectResponse("/login?m=expired", status_code=303)
    async with services_of(request).sessionmaker() as session:
        apps = await oauth.authorised_apps(session, user.id)
    return await render(request, "app_grants.html", {
        "apps": apps, "done": DONE.get(request.query_params.get("m", ""))})


async def revoke_app(request: Request) -> Response:
    user = await current_user(request)
    if user is None:
        return RedirectResponse("/login?m=expired&next=/settings/apps", status_code=303)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    raw = form.get("app")
    if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 18:
        return await render(request, "message.html", {
            "heading": "Nothing was changed", "text": "The form did not say which app."},
            status=400)
    async with services_of(request).sessionmaker() as session, session.begin():
        revoked = await oauth.revoke_for_person(session, user.id, int(raw))
    return RedirectResponse(f"/settings/apps?m={'revoked' if revoked else 'none'}",
                            status_code=303)


routes = [
    Route("/settings/apps", apps_page, methods=["GET"]),
    Route("/settings/apps/revoke", revoke_app, methods=["POST"]),
]
