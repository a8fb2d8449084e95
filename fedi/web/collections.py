"""ActivityPub collections: group outbox (paged), members, moderators, featured threads,
a post's replies and a thread's context (FEP-7888)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Select, func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.activitypub.vocab import AS_CONTEXT
from fedi.groups.roles import moderators as group_moderators
from fedi.services import Services
from fedi.store.models import Actor, Follow, OutboundActivity, Post
from fedi.urls import GROUPS, USERS, Urls
from fedi.web.negotiation import ActivityResponse, not_found

PAGE_SIZE = 20


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _local_actor(request: Request) -> Actor | None:
    services = _services(request)
    kind = request.url.path.split("/")[1]
    uri = services.urls.actor(kind, request.path_params["name"])
    async with services.sessionmaker() as session:
        return (
            await session.execute(select(Actor).where(Actor.uri == uri, Actor.local))
        ).scalar_one_or_none()


def _page_number(request: Request) -> int | None:
    raw = request.query_params.get("page")
    if raw is None:
        return None
    return int(raw) if raw.isdigit() and int(raw) >= 1 else 1


async def _paged(
    request: Request, collection_id: str, total: int, query: Select[Any],
    render: Any = lambda item: item, extra: dict[str, Any] | None = None,
) -> Response:
    """An OrderedCollection whose items come in pages of PAGE_SIZE (`?page=N`)."""
    page = _page_number(request)
    if page is None:
        body: dict[str, Any] = {
            "@context": AS_CONTEXT, "id": collection_id, "type": "OrderedCollection",
            "totalItems": total, **(extra or {}),
        }
        if total:
            body["first"] = f"{collection_id}?page=1"
            body["last"] = f"{collection_id}?page={max(1, -(-total // PAGE_SIZE))}"
        return ActivityResponse(body)
    async with _services(request).sessionmaker() as session:
        rows = (
            await session.execute(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE))
        ).scalars()
        items = [render(row) for row in rows]
    body = {
        "@context": AS_CONTEXT, "id": f"{collection_id}?page={page}",
        "type": "OrderedCollectionPage", "partOf": collection_id, "totalItems": total,
        "orderedItems": items,
    }
    if page * PAGE_SIZE < total:
        body["next"] = f"{collection_id}?page={page + 1}"
    if page > 1:
        body["prev"] = f"{collection_id}?page={page - 1}"
    return ActivityResponse(body)


async def _count(request: Request, query: Select[Any]) -> int:
    async with _services(request).sessionmaker() as session:
        return int((await session.execute(query)).scalar_one())


async def outbox(request: Request) -> Response:
    actor = await _local_actor(request)
    if actor is None:
        return not_found()
    public = OutboundActivity.actor_id == actor.id
    total = await _count(request, select(func.count()).select_from(OutboundActivity).where(public))
    query = select(OutboundActivity.body).where(public).order_by(OutboundActivity.id.desc())
    return await _paged(request, Urls.outbox(actor.uri), total, query, render=json.loads)


async def followers(request: Request) -> Response:
    actor = await _local_actor(request)
    if actor is None:
        return not_found()
    accepted = (Follow.target_id == actor.id, Follow.state == "accepted")
    total = await _count(request, select(func.count()).select_from(Follow).where(*accepted))
    query = (
        select(Actor.uri).join(Follow, Follow.follower_id == Actor.id).where(*accepted)
        .order_by(Follow.id)
    )
    return await _paged(request, Urls.followers(actor.uri), total, query)


async def moderators(request: Request) -> Response:
    group = await _local_actor(request)
    if group is None or group.type != "Group":
        return not_found()
    async with _services(request).sessionmaker() as session:
        uris = [actor.uri for actor in await group_moderators(session, group)]
    return ActivityResponse({
        "@context": AS_CONTEXT, "id": Urls.moderators(group.uri), "type": "OrderedCollection",
        "totalItems": len(uris), "orderedItems": uris,
    })


async def featured(request: Request) -> Response:
    group = await _local_actor(request)
    if group is None or group.type != "Group":
        return not_found()
    async with _services(request).sessionmaker() as session:
        posts = (
            await session.execute(
                select(Post.document).where(
                    Post.group_id == group.id, Post.pinned_at.is_not(None),
                    Post.deleted_at.is_(None), Post.visibility == "public",
                ).order_by(Post.pinned_at.desc())
            )
        ).scalars()
        items = [json.loads(doc) for doc in posts]
    return ActivityResponse({
        "@context": AS_CONTEXT, "id": f"{group.uri}/featured", "type": "OrderedCollection",
        "totalItems": len(items), "orderedItems": items,
    })


async def replies(request: Request) -> Response:
    services = _services(request)
    uri = services.urls.post(request.path_params["post_id"])
    async with services.sessionmaker() as session:
        post = (
            await session.execute(select(Post).where(Post.uri == uri, Post.local))
        ).scalar_one_or_none()
    if post is None or post.visibility != "public":
        return not_found()
    visible = (Post.in_reply_to == post.uri, Post.deleted_at.is_(None),
               Post.visibility == "public")
    total = await _count(request, select(func.count()).select_from(Post).where(*visible))
    query = select(Post.uri).where(*visible).order_by(Post.published)
    return await _paged(request, f"{post.uri}/replies", total, query)


async def context(request: Request) -> Response:
    """FEP-7888: the thread as a collection, owned by the group that hosts it."""
    services = _services(request)
    raw = request.path_params["thread_id"]
    if not raw.isdigit():
        return not_found()
    async with services.sessionmaker() as session:
        root = await session.get(Post, int(raw))
        if root is None or root.thread_id != root.id or root.visibility != "public":
            return not_found()
        group = await session.get(Actor, root.group_id) if root.group_id else None
    if group is None or not group.local:
        return not_found()
    collection_id = f"{services.urls.base}/contexts/{root.id}"
    visible = (Post.thread_id == root.id, Post.deleted_at.is_(None),
               Post.visibility == "public")
    total = await _count(request, select(func.count()).select_from(Post).where(*visible))
    return await _paged(
        request, collection_id, total, select(Post.uri).where(*visible).order_by(Post.published),
        extra={"attributedTo": group.uri, "audience": group.uri},
    )


routes = [
    Route("/posts/{post_id:str}/replies", replies),
    Route("/contexts/{thread_id:str}", context),
]
for _kind in (USERS, GROUPS):
    routes += [
        Route(f"/{_kind}/{{name:str}}/outbox", outbox),
        Route(f"/{_kind}/{{name:str}}/followers", followers),
    ]
routes += [
    Route(f"/{GROUPS}/{{name:str}}/moderators", moderators),
    Route(f"/{GROUPS}/{{name:str}}/featured", featured),
]
