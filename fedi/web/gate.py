"""Who is asking, for the read paths: every page and fetch asks privacy.access through here."""

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
from fedi.web.negotiation import wants_activitypub


async def viewer_of(request: Request) -> Viewer | Response:
    """The signed-in fetcher (HTTP signature), or anonymous; a Response when refused."""
    services: Services = request.app.state.services
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
