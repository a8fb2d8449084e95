"""WebFinger, host-meta and NodeInfo."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fedi.accounts import registration
from fedi.actors.local import INSTANCE_USERNAME, find_local
from fedi.groups.counts import count_visible
from fedi.privacy.visibility import GroupPrivacy
from fedi.services import Services
from fedi.store.backup import fedi_version
from fedi.store.models import Actor, Group, Post, User
from fedi.web.gate import viewer_of

JRD = "application/jrd+json"


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def webfinger(request: Request) -> Response:
    services = _services(request)
    resource = request.query_params.get("resource", "").strip()
    if not resource:
        return JSONResponse({"error": "the resource parameter is required"}, status_code=400)
    domain = services.settings.domain
    async with services.sessionmaker() as session:
        actor: Actor | None = None
        if resource.startswith("acct:") or ("@" in resource and "://" not in resource):
            name, _, host = resource.removeprefix("acct:").lstrip("@").rpartition("@")
            if host.lower() == domain:
                if name.lower() == domain:
                    name = INSTANCE_USERNAME
                actor = await find_local(session, name.lower())
        elif services.urls.is_local(resource):
            actor = (
                await session.execute(select(Actor).where(Actor.uri == resource, Actor.local))
            ).scalar_one_or_none()
    if actor is None or not await _discoverable(request, actor):
        # A hidden group is "no such account" too: its existence is for its members.
        return JSONResponse({"error": f"no such account: {resource}"}, status_code=404)
    return JSONResponse(
        {
            "subject": f"acct:{actor.username}@{domain}",
            "aliases": [actor.uri],
            "links": [
                {"rel": "self", "type": "application/activity+json", "href": actor.uri},
                {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html",
                 "href": actor.url or actor.uri},
                # Where someone here follows a link from another server (remote follow).
                {"rel": "http://ostatus.org/schema/1.0/subscribe",
                 "template": f"{services.settings.base_url}/authorize_interaction?uri={{uri}}"},
            ],
        },
        media_type=JRD,
        headers={"Access-Control-Allow-Origin": "*"},
    )


async def _discoverable(request: Request, actor: Actor) -> bool:
    """Hidden groups answer only a WebFinger request signed by one of their members (or
    moderators); fedi joins them by the actor URI its invite link carries, not by handle."""
    if actor.type != "Group":
        return True
    services = _services(request)
    async with services.sessionmaker() as session:
        config = await session.get(Group, actor.id)
    if config is None or GroupPrivacy(config.privacy) is not GroupPrivacy.HIDDEN:
        return True
    viewer = await viewer_of(request)
    return not isinstance(viewer, Response) and (
        viewer.is_member(actor.uri) or viewer.moderates(actor.uri)
    )


async def host_meta(request: Request) -> Response:
    base = _services(request).settings.base_url
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
        f'  <Link rel="lrdd" template="{base}/.well-known/webfinger?resource={{uri}}"/>\n'
        "</XRD>\n"
    )
    return Response(body, media_type="application/xrd+xml")


async def nodeinfo_links(request: Request) -> Response:
    services = _services(request)
    base = services.settings.base_url
    return JSONResponse(
        {
            "links": [
                {"rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
                 "href": f"{base}/nodeinfo/2.0"},
                {"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                 "href": f"{base}/nodeinfo/2.1"},
                # FEP-2677: how to find the instance actor.
                {"rel": "https://www.w3.org/ns/activitystreams#Application",
                 "href": services.urls.instance_actor},
            ]
        }
    )


async def nodeinfo(request: Request) -> Response:
    services = _services(request)
    version = request.path_params["version"]
    if version not in ("2.0", "2.1"):
        return JSONResponse({"error": "NodeInfo 2.0 and 2.1 are served"}, status_code=404)
    async with services.sessionmaker() as session:
        users = (await session.execute(select(func.count()).select_from(User))).scalar_one()
        # Published counts are of what an anonymous visitor may see: no removed, held,
        # members-only or otherwise non-public posts (fedi.groups.counts mirrors the gate).
        posts = await count_visible(session, Post.local.is_(True))
        mode = await registration.get_mode(session)
    software: dict[str, str] = {"name": "fedi", "version": fedi_version()}
    schema = f"http://nodeinfo.diaspora.software/ns/schema/{version}#"
    return JSONResponse(
        {
            "version": version,
            "software": software,
            "protocols": ["activitypub"],
            "services": {"inbound": [], "outbound": []},
            "openRegistrations": mode in ("open", "approval"),
            "usage": {"users": {"total": users}, "localPosts": posts},
            "metadata": {"nodeName": services.settings.instance_name},
        },
        media_type=f'application/json; profile="{schema}"',
    )


routes = [
    Route("/.well-known/webfinger", webfinger),
    Route("/.well-known/host-meta", host_meta),
    Route("/.well-known/nodeinfo", nodeinfo_links),
    Route("/nodeinfo/{version}", nodeinfo),
]
