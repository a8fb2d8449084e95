"""What a person does to a status: favourite (the web's like button: groups.reactions.vote,
which federates the Like), boost (groups.reactions.boost), bookmark; who favourited or
boosted it; the caller's bookmarks and favourites.

Each action answers the status as it now is, and doing it twice changes nothing (Mastodon's
apps resend). Pinning to a profile and muting a conversation are not built: a clear 422.
Lists page by the bookmark's or the reaction's row id, as Mastodon does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.errors import ApiError
from fedi.api.pagination import link_header, newest_first, page_query, paged
from fedi.api.params import Params, read_params
from fedi.api.status_common import acting, json_answer, rendered, status_path, visible_post
from fedi.groups.reactions import boost, vote
from fedi.store.models import Actor, Bookmark, Post, Reaction

Change = Callable[[AsyncSession, Request, Actor, Post], Awaitable[None]]


async def _has(session: AsyncSession, person: Actor, post: Post, kind: str) -> bool:
    return (await session.execute(select(Reaction.id).where(
        Reaction.post_id == post.id, Reaction.actor_id == person.id, Reaction.type == kind
    ))).first() is not None


async def _act(request: Request, caller: Caller, change: Change) -> Response:
    """Find the status through the gate, change it in one transaction, answer it anew."""
    services = services_of(request)
    try:
        async with services.sessionmaker() as session, session.begin():
            p = await presenter(session, request, caller)
            await change(session, request, await acting(session, caller.need_person()),
                         await visible_post(p, status_path(request)))
    except IntegrityError:
        pass  # the same request, sent twice at once: the other one made the change
    async with services.sessionmaker() as session:
        p = await presenter(session, request, caller)
        return json_answer(await rendered(p, await visible_post(p, status_path(request))))


def _liking(wanted: bool) -> Change:
    async def change(session: AsyncSession, request: Request, person: Actor, post: Post
                     ) -> None:
        if await _has(session, person, post, "Like") != wanted:
            await vote(session, services_of(request).urls, person, post, "Like")
    return change


def _boosting(wanted: bool) -> Change:
    async def change(session: AsyncSession, request: Request, person: Actor, post: Post
                     ) -> None:
        await boost(session, services_of(request).urls, person, post, undo=not wanted)
    return change


def _bookmarking(wanted: bool) -> Change:
    async def change(session: AsyncSession, request: Request, person: Actor, post: Post
                     ) -> None:
        marked = (await session.execute(select(Bookmark.id).where(
            Bookmark.actor_id == person.id, Bookmark.post_id == post.id))).first()
        if wanted and marked is None:
            session.add(Bookmark(actor_id=person.id, post_id=post.id))
        elif not wanted and marked is not None:
            await session.execute(delete(Bookmark).where(
                Bookmark.actor_id == person.id, Bookmark.post_id == post.id))
    return change


def _action(scope: str, change: Change) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request, caller: Caller) -> Response:
        return await _act(request, caller, change)
    return endpoint(scope)(run)


ACTIONS = {
    "favourite": _action("write:favourites", _liking(True)),
    "unfavourite": _action("write:favourites", _liking(False)),
    "reblog": _action("write:statuses", _boosting(True)),
    "unreblog": _action("write:statuses", _boosting(False)),
    "bookmark": _action("write:bookmarks", _bookmarking(True)),
    "unbookmark": _action("write:bookmarks", _bookmarking(False)),
}


def _not_built(reason: str) -> Callable[[Request, Caller], Awaitable[Response]]:
    async def refuse(request: Request, caller: Caller) -> Response:
        async with services_of(request).sessionmaker() as session:
            await visible_post(await presenter(session, request, caller), status_path(request))
        raise ApiError(422, f"Validation failed: {reason}")
    return refuse


PIN = ("pinning to a profile is not supported here: a group's moderators pin threads in "
       "the group")
MUTE = "muting a conversation is not supported here yet"
NOT_BUILT = {
    "pin": endpoint("write:accounts")(_not_built(PIN)),
    "unpin": endpoint("write:accounts")(_not_built(PIN)),
    "mute": endpoint("write:mutes")(_not_built(MUTE)),
    "unmute": endpoint("write:mutes")(_not_built(MUTE)),
}


# -- lists ---------------------------------------------------------------------------------


async def _reactors(request: Request, caller: Caller, kind: str) -> Response:
    """The accounts that reacted `kind` to a status the caller may see, newest first."""
    params = await read_params(request)
    page = page_query(params)
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        post = await visible_post(p, status_path(request))
        query = (select(Reaction.id, Actor).join(Actor, Actor.id == Reaction.actor_id)
                 .where(Reaction.post_id == post.id, Reaction.type == kind))
        window = paged(cast(Any, query), cast(Any, Reaction.id), page)
        rows = newest_first((await session.execute(window)).all(), page)
        accounts = await p.accounts([actor for _, actor in rows])
    return _listed(request, params, accounts, [i for i, _ in rows])


def _listed(request: Request, params: Params, items: list[dict[str, Any]], ids: list[int]
            ) -> Response:
    link = link_header(services_of(request).settings.base_url, request.url.path, params, ids)
    return json_answer(items, {"Link": link} if link else None)


@endpoint("read:statuses", public=True)
async def favourited_by(request: Request, caller: Caller) -> Response:
    return await _reactors(request, caller, "Like")


@endpoint("read:statuses", public=True)
async def reblogged_by(request: Request, caller: Caller) -> Response:
    return await _reactors(request, caller, "Announce")


async def _mine(request: Request, caller: Caller, query: Select[int, Post],
                column: Any) -> Response:
    """The caller's own list of statuses (bookmarks, favourites), paged by `column`; the
    gate drops those the caller may no longer see."""
    params = await read_params(request)
    page = page_query(params)
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        # paged's annotations predate SQLAlchemy 2.1's Select[*Ts]; the query is a Select.
        window = paged(cast(Any, query), column, page)
        rows = newest_first((await session.execute(window)).all(), page)
        statuses = await p.statuses([post for _, post in rows])
    return _listed(request, params, statuses, [i for i, _ in rows])


@endpoint("read:bookmarks")
async def bookmarks(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    return await _mine(request, caller, select(Bookmark.id, Post).join(
        Post, Post.id == Bookmark.post_id).where(Bookmark.actor_id == person.id),
        cast(Any, Bookmark.id))


@endpoint("read:favourites")
async def favourites(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    return await _mine(request, caller, select(Reaction.id, Post).join(
        Post, Post.id == Reaction.post_id).where(
            Reaction.actor_id == person.id, Reaction.type == "Like"), cast(Any, Reaction.id))


routes = [
    *(Route(f"/api/v1/statuses/{{id}}/{name}", handler, methods=["POST"])
      for name, handler in {**ACTIONS, **NOT_BUILT}.items()),
    Route("/api/v1/statuses/{id}/favourited_by", favourited_by, methods=["GET"]),
    Route("/api/v1/statuses/{id}/reblogged_by", reblogged_by, methods=["GET"]),
    Route("/api/v1/bookmarks", bookmarks, methods=["GET"]),
    Route("/api/v1/favourites", favourites, methods=["GET"]),
]
