"""Who is asking, for the read paths: every page and fetch asks privacy.access through here.

A browser asking for a page is the person signed in to this server, if any; an ActivityPub
fetch is whoever signed it (a session cookie never stands in for a signature)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fedi.activitypub.parse import host_of
from fedi.errors import SignatureError
from fedi.federation.fetch_auth import RefusedHost
from fedi.groups.viewers import facts_for, viewer_for
from fedi.privacy.access import Viewer, can_view
from fedi.services import Services
from fedi.store.models import Post
from fedi.web.auth import current_user
from fedi.web.negotiation import wants_activitypub


async def viewer_of(request: Request) -> Viewer | Response:
    """The signed-in person (pages) or fetcher (HTTP signature), or anonymous; a Response
    when refused. Asked once per request."""
    if "viewer" not in request.state._state:
        request.state.viewer = await _viewer_of(request)
    found: Viewer | Response = request.state.viewer
    return found


async def _viewer_of(request: Request) -> Viewer | Response:
    services: Services = request.app.state.services
    if not wants_activitypub(request):
        person = await current_user(request)
        if person is not None:
            async with services.sessionmaker() as session:
                return await viewer_for(session, person.uri)
    query = f"?{request.url.query}" if request.url.query else ""
    url = f"{services.settings.base_url}{request.url.path}{query}"
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        signer = await services.fetch_verifier.signer(request.method, url, headers)
    except RefusedHost as exc:
        return JSONResponse({"error": exc.reason}, status_code=403)
    except SignatureError as exc:
        return JSONResponse({"error": exc.reason}, status_code=401)
    if signer is None and services.settings.authorized_fetch and wants_activitypub(request):
        return JSONResponse(
            {"error": "this server requires signed fetches (HTTP Signatures)"}, status_code=401
        )
    blocked = False
    if signer is not None:
        blocked = await services.fetch_verifier.host_policy(host_of(signer)) is not None
    async with services.sessionmaker() as session:
        return await viewer_for(session, signer, blocked=blocked)


async def visible(request: Request, post: Post, viewer: Viewer) -> bool:
    services: Services = request.app.state.services
    async with services.sessionmaker() as session:
        return can_view(await facts_for(session, post), viewer)
