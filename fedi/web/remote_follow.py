"""Joining across servers from a browser, both ways.

- "Join from your own server": a person on Mastodon, Lemmy or another fedi gives their
  handle; we WebFinger their server for its OStatus subscribe template
  (`http://ostatus.org/schema/1.0/subscribe`, Mastodon's `/authorize_interaction?uri={uri}`)
  and send them there (303) with the group filled in. The lookup goes through the federation
  client, so the SSRF guard and the domain policy hold; only http(s) templates are followed.
- `/authorize_interaction?uri=…`: the same link from another server to us. A signed-in
  person is taken to the lookup page of that actor (with its Join/Follow button); others log
  in first and come back.

The form page's Content-Security-Policy lets this one form lead to another site: browsers
apply `form-action` to the redirect after a form too, and the person's server is not known
before they type it.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedi.activitypub.client import ACCEPT_JRD, parse_handle
from fedi.activitypub.parse import is_http_url
from fedi.actors.local import find_local
from fedi.errors import FetchError
from fedi.privacy.visibility import GroupPrivacy
from fedi.services import Services
from fedi.store.models import Actor, Group
from fedi.urls import GROUPS
from fedi.web.auth import checked_form, current_user, render, services_of
from fedi.web.headers import CONTENT_SECURITY_POLICY
from fedi.web.negotiation import not_found

SUBSCRIBE_REL = "http://ostatus.org/schema/1.0/subscribe"
MAX_HANDLE = 320
MAX_URI = 2048
# Only this page's form may lead elsewhere (see the module docstring).
FORM_PAGE_POLICY = CONTENT_SECURITY_POLICY.replace(
    "form-action 'self'", "form-action 'self' https: http:")


def subscribe_template(jrd: dict[str, object]) -> str | None:
    """The OStatus subscribe template of a WebFinger answer, if it is an http(s) one."""
    links = jrd.get("links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == SUBSCRIBE_REL:
            template = link.get("template")
            if isinstance(template, str) and "{uri}" in template and is_http_url(template):
                return template
    return None


async def find_subscribe_template(services: Services, handle: str) -> str:
    """WebFinger `handle` on its own server (https; http too only where private addresses
    are allowed, i.e. development and tests). FetchError with a reason a person can act on."""
    name, host = parse_handle(handle)
    resource = urlencode({"resource": f"acct:{name}@{host}"})
    schemes = ("https", "http") if services.settings.allow_private_addresses else ("https",)
    jrd: dict[str, object] | None = None
    failure = ""
    for scheme in schemes:
        try:
            _, jrd = await services.client.fetch_json(
                f"{scheme}://{host}/.well-known/webfinger?{resource}", accept=ACCEPT_JRD)
            break
        except FetchError as exc:
            failure = exc.reason
    if jrd is None:
        raise FetchError(f"could not reach {host} to find your account ({failure})")
    template = subscribe_template(jrd)
    if template is None:
        raise FetchError(f"{host} does not say where to follow from (no remote-follow link "
                         "in its WebFinger answer): search for the group's handle there")
    return template


async def _joinable_group(request: Request) -> tuple[Services, Actor]:
    services = services_of(request)
    async with services.sessionmaker() as session:
        group = await find_local(session, request.path_params["name"])
        if group is not None and group.type != "Group":
            group = None
        config = await session.get(Group, group.id) if group is not None else None
    # A hidden group is joined by invite link only; its existence is for its members.
    if group is None or config is None or config.privacy == GroupPrivacy.HIDDEN.value:
        not_found()
    return services, group


async def _page(request: Request, group: Actor, handle: str = "", error: str | None = None,
                status: int = 200) -> Response:
    services = services_of(request)
    response = await render(request, "remote_follow.html", {
        "group": group, "handle": f"@{group.username}@{services.settings.domain}",
        "typed": handle, "error": error,
    }, status=status)
    response.headers["Content-Security-Policy"] = FORM_PAGE_POLICY
    return response


async def remote_follow(request: Request) -> Response:
    services, group = await _joinable_group(request)
    if request.method == "GET":
        return await _page(request, group)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    raw = form.get("handle")
    handle = raw.strip() if isinstance(raw, str) else ""
    if not handle or len(handle) > MAX_HANDLE:
        return await _page(request, group, handle[:MAX_HANDLE],
                           "Write your handle, like you@your.server.", 400)
    try:
        template = await find_subscribe_template(services, handle)
    except FetchError as exc:
        return await _page(request, group, handle, f"Nothing was done: {exc.reason}.", 400)
    target = template.replace("{uri}", quote(group.uri, safe=""))
    if not is_http_url(target):
        return await _page(request, group, handle, "Your server's follow link is not a web "
                           "address; search for the group's handle there instead.", 400)
    return RedirectResponse(target, status_code=303)


async def authorize_interaction(request: Request) -> Response:
    uri = request.query_params.get("uri", "").strip().removeprefix("acct:")
    if await current_user(request) is None:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': back, 'm': 'login'})}",
                                status_code=303)
    if not uri or len(uri) > MAX_URI or not (is_http_url(uri) or "@" in uri):
        return await render(request, "authorize_interaction.html", {
            "uri": uri[:MAX_URI], "error": "Give a web address or a handle (@name@server)."
            if uri else None}, status=400 if uri else 200)
    return RedirectResponse(f"/lookup?{urlencode({'q': uri})}", status_code=303)


routes = [
    Route(f"/{GROUPS}/{{name:str}}/remote-follow", remote_follow, methods=["GET", "POST"]),
    Route("/authorize_interaction", authorize_interaction),
]
