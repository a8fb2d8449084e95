"""ActivityPub collections: group outbox (paged), members, moderators, featured threads,
a post's replies and a thread's context (FEP-7888)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.activitypub.vocab import AS_CONTEXT
from fedi.groups.roles import moderators as group_moderators
from fedi.groups.viewers import facts_for
from fedi.privacy.access import Viewer, can_view
from fedi.privacy.visibility import GroupPrivacy
from fedi.services import Services
from fedi.store.models import Actor, Follow, Group, OutboundActivity, Post
from fedi.urls import GROUPS, USERS, Urls
from fedi.web.federation import activity_visible
from fedi.web.gate import viewer_of
from fedi.web.negotiation import ActivityResponse, not_found
from fedi.web.params import row_id

PAGE_SIZE = 20
MAX_ITEMS = 1000  # newest items a collection lists


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
    return row_id(raw) or 1  # unreadable or out of range: the first page


def _paged(
    request: Request, collection_id: str, items: list[Any],
    extra: dict[str, Any] | None = None,
) -> Response:
    """An OrderedCollection of items this viewer may see, in pages of PAGE_SIZE (`?page=N`)."""
    total = len(items)
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
    start = (page - 1) * PAGE_SIZE
    body = {
        "@context": AS_CONTEXT, "id": f"{collection_id}?page={page}",
        "type": "OrderedCollectionPage", "partOf": collection_id, "totalItems": total,
        "orderedItems": items[start:start + PAGE_SIZE],
    }
    if start + PAGE_SIZE < total:
        body["next"] = f"{collection_id}?page={page + 1}"
    if page > 1:
        body["prev"] = f"{collection_id}?page={page - 1}"
    return ActivityResponse(body)


async def _visible_posts(
    request: Request, viewer: Viewer, *conditions: Any
) -> list[Post]:
    """Posts matching the conditions that privacy.access lets this viewer see."""
    services = _services(request)
    async with services.sessionmaker() as session:
        rows = (
            await session.execute(
                select(Post, Actor).join(Actor, Actor.id == Post.author_id)
                .where(*conditions, Post.deleted_at.is_(None))
                .order_by(Post.published).limit(MAX_ITEMS)
            )
        ).all()
        visible = []
        for post, author in rows:
            facts = await facts_for(session, post)
            if not can_view(facts, viewer):
                continue
            # Silenced servers stay out of what non-members are shown (members still see it).
            if (not author.local and not viewer.is_member(facts.group)
                    and await services.domain_policy.is_silenced(author.domain)):
                continue
            visible.append(post)
        return visible


async def outbox(request: Request) -> Response:
    actor = await _local_actor(request)
    if actor is None:
        return not_found()
    viewer = await viewer_of(request)
    if isinstance(viewer, Response):
        return viewer
    async with _services(request).sessionmaker() as session:
        bodies = (
            await session.execute(
                select(OutboundActivity.body).where(OutboundActivity.actor_id == actor.id)
                .order_by(OutboundActivity.id.desc()).limit(MAX_ITEMS)
            )
        ).scalars()
        items = [doc for doc in map(json.loads, bodies)
                 if await activity_visible(session, doc, viewer)]
    return _paged(request, Urls.outbox(actor.uri), items)


async def followers(request: Request) -> Response:
    actor = await _local_actor(request)
    if actor is None:
        return not_found()
    viewer = await viewer_of(request)
    if isinstance(viewer, Response):
        return viewer
    async with _services(request).sessionmaker() as session:
        uris = list(
            (
                await session.execute(
                    select(Actor.uri).join(Follow, Follow.follower_id == Actor.id)
                    .where(Follow.target_id == actor.id, Follow.state == "accepted")
                    .order_by(Follow.id)
                )
            ).scalars()
        )
        config = await session.get(Group, actor.id) if actor.type == "Group" else None
    private = config is not None and GroupPrivacy(config.privacy) is not GroupPrivacy.PUBLIC
    if private and not viewer.is_member(actor.uri):
        # The count is always public; who the members are is for members only.
        return ActivityResponse({
            "@context": AS_CONTEXT, "id": Urls.followers(actor.uri),
            "type": "OrderedCollection", "totalItems": len(uris),
        })
    return _paged(request, Urls.followers(actor.uri), uris)


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
    viewer = await viewer_of(request)
    if isinstance(viewer, Response):
        return viewer
    pinned = await _visible_posts(
        request, viewer, Post.group_id == group.id, Post.pinned_at.is_not(None)
    )
    pinned.sort(key=lambda p: -(p.pinned_at or 0))
    items = [json.loads(p.document) for p in pinned]
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
    if post is None:
        return not_found()
    viewer = await viewer_of(request)
    if isinstance(viewer, Response):
        return viewer
    async with services.sessionmaker() as session:
        if not can_view(await facts_for(session, post), viewer):
            return not_found()
    answers = await _visible_posts(request, viewer, Post.in_reply_to == post.uri)
    return _paged(request, f"{post.uri}/replies", [p.uri for p in answers])


async def context(request: Request) -> Response:
    """FEP-7888: the thread as a collection, owned by the group that hosts it."""
    services = _services(request)
    thread_id = row_id(request.path_params["thread_id"])
    if thread_id is None:
        return not_found()
    async with services.sessionmaker() as session:
        root = await session.get(Post, thread_id)
        group = await session.get(Actor, root.group_id) if root and root.group_id else None
    if root is None or root.thread_id != root.id or group is None or not group.local:
        return not_found()
    viewer = await viewer_of(request)
    if isinstance(viewer, Response):
        return viewer
    posts = await _visible_posts(request, viewer, Post.thread_id == root.id)
    if not any(p.id == root.id for p in posts):
        return not_found()
    return _paged(
        request, f"{services.urls.base}/contexts/{root.id}", [p.uri for p in posts],
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
