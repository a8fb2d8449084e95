"""ActivityPub routes: actors, inboxes, collections, objects. Thin: parse, call, answer."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from fedi import metrics
from fedi.activitypub.activities import iso
from fedi.activitypub.actors import actor_document, key_document
from fedi.activitypub.keys import multikey_public_pem
from fedi.activitypub.vocab import AS_CONTEXT, POST_TYPES, PUBLIC, addressees, first_type
from fedi.actors.documents import view_of
from fedi.federation.receive import InboxRequest, InboxResult
from fedi.groups.relay import group_copy
from fedi.groups.threads import find_post
from fedi.groups.viewers import facts_for
from fedi.privacy.access import Viewer, can_view
from fedi.services import Services
from fedi.store.models import Actor, Group, OutboundActivity, Post
from fedi.urls import GROUPS, USERS, Urls
from fedi.web.gate import viewer_of, visible
from fedi.web.negotiation import ActivityResponse, not_found, wants_activitypub
from fedi.web.pages import render_actor, render_post
from fedi.web.params import non_negative, row_id


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _local_actor(request: Request) -> Actor | None:
    services = _services(request)
    name = request.path_params.get("name")
    if name is None:
        uri = services.urls.instance_actor
    else:
        uri = services.urls.actor(request.url.path.split("/")[1], name)
    async with services.sessionmaker() as session:
        return (
            await session.execute(select(Actor).where(Actor.uri == uri, Actor.local))
        ).scalar_one_or_none()


async def actor(request: Request) -> Response:
    found = await _local_actor(request)
    if found is None:
        return not_found()
    if not wants_activitypub(request):
        if found.type == "Application":
            return RedirectResponse("/", status_code=303)
        return await render_actor(request, found)
    services = _services(request)
    # Actors are public (peers fetch keys from them), but a server the domain policy refuses
    # gets a 403 when it identifies itself, not the actor (README: suspend).
    refusal = await services.fetch_verifier.refusal(
        {k.lower(): v for k, v in request.headers.items()}
    )
    if refusal is not None:
        return JSONResponse({"error": refusal}, status_code=403)
    async with services.sessionmaker() as session:
        group = await session.get(Group, found.id) if found.type == "Group" else None
    return ActivityResponse(actor_document(view_of(found, services.urls, group)))


async def ed25519_key(request: Request) -> Response:
    """An actor's Ed25519 key as a CryptographicKey document, the keyid of its RFC 9421
    `ed25519` signatures (Urls.ed25519_key_id); public, like the actor."""
    found = await _local_actor(request)
    if found is None or not found.assertion_public_key:
        return not_found()
    services = _services(request)
    refusal = await services.fetch_verifier.refusal(
        {k.lower(): v for k, v in request.headers.items()}
    )
    if refusal is not None:
        return JSONResponse({"error": refusal}, status_code=403)
    return ActivityResponse(key_document(
        Urls.ed25519_key_id(found.uri), found.uri, multikey_public_pem(found.assertion_public_key)
    ))


async def inbox(request: Request) -> Response:
    services = _services(request)
    recipient: str | None = None
    if "name" in request.path_params or request.url.path == "/actor/inbox":
        found = await _local_actor(request)
        if found is None:
            return not_found()
        recipient = found.uri
    limit = services.settings.max_inbox_bytes
    declared = non_negative(request.headers.get("content-length"))  # else the stream cap holds
    if declared is not None and declared > limit:
        return _too_large(limit)
    headers = {k.lower(): v for k, v in request.headers.items()}
    # Under a flood, refuse before reading the body.
    admission = await services.receiver.admit(headers)
    if isinstance(admission, InboxResult):
        return _inbox_answer(admission)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return _too_large(limit)
        chunks.append(chunk)
    query = f"?{request.url.query}" if request.url.query else ""
    result = await services.receiver.receive(
        InboxRequest(
            method=request.method,
            url=f"{services.settings.base_url}{request.url.path}{query}",
            headers=headers,
            body=b"".join(chunks),
            recipient=recipient,
        ),
        admission,
    )
    return _inbox_answer(result)


def _too_large(limit: int) -> Response:
    metrics.inbox_result(413)
    return JSONResponse({"error": f"body larger than {limit} bytes"}, status_code=413)


def _inbox_answer(result: InboxResult) -> Response:
    if result.status == 202:
        return Response(status_code=202)
    retry = {"Retry-After": str(result.retry_after)} if result.retry_after is not None else None
    return JSONResponse({"error": result.reason}, status_code=result.status, headers=retry)


async def post(request: Request) -> Response:
    services = _services(request)
    uri = services.urls.post(request.path_params["post_id"])
    async with services.sessionmaker() as session:
        found = (
            await session.execute(select(Post).where(Post.uri == uri, Post.local))
        ).scalar_one_or_none()
        author = await session.get(Actor, found.author_id) if found else None
    if found is None:
        return not_found()
    viewer = await viewer_of(request)
    if isinstance(viewer, Response):
        return viewer
    if found.deleted_at is not None:
        # Only someone who could have seen it learns that it existed.
        async with services.sessionmaker() as session:
            facts = replace(await facts_for(session, found), deleted=False)
        return tombstone(found) if can_view(facts, viewer) else not_found()
    if not await visible(request, found, viewer):
        return not_found()
    if not wants_activitypub(request):
        return await render_post(request, found, author, viewer)
    return ActivityResponse(json.loads(found.document))


async def group_copy_document(request: Request) -> Response:
    """The group's copy of a non-public post (what microblog members see)."""
    services = _services(request)
    post_id = row_id(request.path_params["post_id"])
    if post_id is None:
        return not_found()
    async with services.sessionmaker() as session:
        found = await session.get(Post, post_id)
        group = await session.get(Actor, found.group_id) if found and found.group_id else None
        if found is None or group is None or not group.local or found.copy_uri is None:
            return not_found()
        facts = await facts_for(session, found)
        document = await group_copy(session, services.urls, group, found, facts)
    viewer = await viewer_of(request)
    if isinstance(viewer, Response):
        return viewer
    if not can_view(facts, viewer):
        return not_found()
    return ActivityResponse(document)


def tombstone(post: Post) -> Response:
    """A deleted post answers 410 with a Tombstone, so peers know to delete their copy."""
    return ActivityResponse(
        {"@context": AS_CONTEXT, "id": post.uri, "type": "Tombstone",
         "formerType": post.type, "deleted": iso(post.deleted_at or 0)},
        status_code=410,
    )


async def activity(request: Request) -> Response:
    services = _services(request)
    uri = services.urls.activity(request.path_params["activity_id"])
    async with services.sessionmaker() as session:
        found = (
            await session.execute(select(OutboundActivity).where(OutboundActivity.uri == uri))
        ).scalar_one_or_none()
    if found is None:
        return not_found()
    document: dict[str, Any] = json.loads(found.body)
    viewer = await viewer_of(request)
    if isinstance(viewer, Response):
        return viewer
    async with services.sessionmaker() as session:
        if not await activity_visible(session, document, viewer):
            return not_found()
    return ActivityResponse(document)


def carried_post(document: dict[str, Any]) -> str | None:
    """The post an activity carries: Create(post), Announce(post), Announce(Create(post))…"""
    obj: Any = document.get("object")
    for _ in range(2):
        if isinstance(obj, str):
            return obj
        if not isinstance(obj, dict):
            return None
        if first_type(obj) in POST_TYPES or first_type(obj) == "Tombstone":
            # The group's copy of a post names the original as its url.
            if "/copies/" in str(obj.get("id")) and isinstance(obj.get("url"), str):
                return str(obj["url"])
            found = obj.get("id")
            return found if isinstance(found, str) else None
        obj = obj.get("object")
    return None


async def activity_visible(
    session: AsyncSession, document: dict[str, Any], viewer: Viewer
) -> bool:
    """An activity that carries a post is served to whoever the gate lets see that post;
    others by their own addressing. Follows, Accepts and the like are not served."""
    if document.get("type") not in ("Create", "Announce", "Update", "Delete"):
        return False
    if viewer.blocked:
        return False
    uri = carried_post(document)
    post = await find_post(session, uri) if uri else None
    if post is not None:
        return can_view(replace(await facts_for(session, post), deleted=False), viewer)
    audience = addressees(document)
    if PUBLIC in audience:
        return True
    if viewer.actor is not None and viewer.actor in audience:
        return True
    groups = viewer.member_of | viewer.moderator_of
    return any(uri in groups or uri.removesuffix("/followers") in groups for uri in audience)


routes = [
    Route("/actor", actor),
    Route("/actor/inbox", inbox, methods=["POST"]),
    Route("/actor/ed25519-key", ed25519_key),
    Route("/inbox", inbox, methods=["POST"]),
    Route("/posts/{post_id:str}", post),
    Route("/activities/{activity_id:str}", activity),
    Route("/copies/{post_id:str}", group_copy_document),
]
for _kind in (USERS, GROUPS):
    routes += [
        Route(f"/{_kind}/{{name:str}}", actor),
        Route(f"/{_kind}/{{name:str}}/inbox", inbox, methods=["POST"]),
        Route(f"/{_kind}/{{name:str}}/ed25519-key", ed25519_key),
    ]
