"""Accounts: the caller's own (verify_credentials, update_credentials), anyone's by id or
handle, their statuses, followers and following.

A group is an account with `group: true`; its statuses are the threads and replies it
holds, its followers its members. Every status passes the privacy gate (the Presenter);
a hidden group is "Record not found" to whoever is not in it, as it is on the web; the
members of a private or hidden group are listed to its members only, as its followers
collection does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.accounts import avatars, profile
from fedi.activitypub.actors import actor_document
from fedi.actors.documents import view_of
from fedi.actors.local import INSTANCE_USERNAME, find_local
from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.entities import Presenter, plain_note
from fedi.api.errors import ApiError, not_found, unprocessable
from fedi.api.pagination import PageQuery, link_header, newest_first, page_query, paged
from fedi.api.params import Params, read_params
from fedi.errors import ValidationError
from fedi.privacy.access import Viewer
from fedi.privacy.visibility import GroupPrivacy
from fedi.services import Services
from fedi.store.models import Actor, Follow, Group, GroupRole, Post

ACCOUNT_TYPES = ("Person", "Group", "Service", "Application", "Organization")
UPLOAD_LIMIT = avatars.MAX_BYTES + 64 * 1024


# -- finding accounts ---------------------------------------------------------------------


async def shown_to(session: AsyncSession, viewer: Viewer, actors: Sequence[Actor]
                   ) -> list[Actor]:
    """The accounts this viewer may know of: not the instance actor, and a hidden group
    only to its members and moderators."""
    groups = [a.id for a in actors if a.local and a.type == "Group"]
    hidden = set((await session.execute(select(Group.actor_id).where(
        Group.actor_id.in_(groups), Group.privacy == GroupPrivacy.HIDDEN.value))).scalars()
    ) if groups else set()
    return [a for a in actors
            if a.type in ACCOUNT_TYPES and not (a.local and a.username == INSTANCE_USERNAME)
            and (a.id not in hidden or viewer.is_member(a.uri) or viewer.moderates(a.uri))]


async def find_account(session: AsyncSession, viewer: Viewer, raw: str) -> Actor:
    """The account with this id, or 404 (also for one this viewer may not know of)."""
    if not raw.isdigit() or len(raw) > 18:
        raise not_found()
    actor = await session.get(Actor, int(raw))
    if actor is None or not await shown_to(session, viewer, [actor]):
        raise not_found()
    return actor


async def members_listed(session: AsyncSession, viewer: Viewer, group: Actor) -> bool:
    """Whether this viewer may see who is in the group (its members page and followers
    collection answer the same): anyone for a public or remote group, else its members."""
    config = await session.get(Group, group.id) if group.local else None
    if config is None or GroupPrivacy(config.privacy) is GroupPrivacy.PUBLIC:
        return True
    return viewer.is_member(group.uri) or viewer.moderates(group.uri)


def account_path(request: Request) -> str:
    return str(request.path_params["account_id"])


def pending_requests(moderator: Actor) -> Select[Follow, Actor]:
    """Pending requests to join the groups this person moderates: (Follow, requester)."""
    moderated = select(GroupRole.group_id).where(GroupRole.actor_id == moderator.id)
    return (select(Follow, Actor).join(Actor, Actor.id == Follow.follower_id)
            .where(Follow.state == "pending", Follow.target_id.in_(moderated)))


# -- the caller's own account ----------------------------------------------------------------


async def credential_account(session: AsyncSession, request: Request, caller: Caller,
                             person: Actor) -> dict[str, Any]:
    """The Account with `source`, as verify_credentials and update_credentials answer."""
    p = await presenter(session, request, caller)
    account = await p.account(person)
    requests = (await session.execute(select(func.count()).select_from(
        pending_requests(person).subquery()))).scalar_one()
    account["source"] = {
        "privacy": "public", "sensitive": False, "language": "",
        "note": plain_note(person.summary), "fields": [],
        "follow_requests_count": int(requests),
    }
    return account


def _may_read_profile(caller: Caller) -> None:
    grant = caller.grant
    if grant is not None and not (grant.allows("read:accounts") or grant.allows("profile")):
        raise ApiError(403, "This action is outside the authorized scopes "
                            "(needs read:accounts or profile)")


@endpoint(None)
async def verify_credentials(request: Request, caller: Caller) -> Response:
    _may_read_profile(caller)
    person = caller.need_person()
    async with services_of(request).sessionmaker() as session:
        return JSONResponse(await credential_account(session, request, caller, person))


def _document(services: Services) -> profile.Document:
    """The actor document as served at the actor's URL: the body of its Update (as the
    web's settings page sends it)."""
    return lambda actor: actor_document(view_of(actor, services.urls))


async def _upload(params: Params, name: str) -> bytes | None:
    value = params.raw(name)
    if value is None or value == "":
        return None
    if not isinstance(value, UploadFile):
        raise unprocessable(f"{name} must be an image file (multipart upload)", name)
    data = await value.read(avatars.MAX_BYTES + 1)
    if not data:
        return None
    return data


@endpoint("write:accounts")
async def update_credentials(request: Request, caller: Caller) -> Response:
    """display_name, note and avatar, through the use cases of the web's settings page
    (each queues an Update of the actor to its followers and remote groups). Everything is
    checked before anything is written; a header image is refused (people have none)."""
    person = caller.need_person()
    services = services_of(request)
    params = await read_params(request, max_body=UPLOAD_LIMIT)
    if await _upload(params, "header") is not None:
        raise unprocessable("fedi has no header images for people; leave header out",
                            "header")
    name = params.text("display_name", max_length=profile.MAX_NAME * 4)
    note = params.text("note", max_length=profile.MAX_BIO * 4)
    image = await _upload(params, "avatar")
    try:
        if image is not None:
            avatars.check(image)  # before anything is written
        async with services.sessionmaker() as session, session.begin():
            actor = await session.get(Actor, person.id)
            if actor is None:
                raise not_found()
            if name is not None or note is not None:
                await profile.update_profile(
                    session, services.urls, _document(services), actor.id,
                    actor.name or "" if name is None else name,
                    plain_note(actor.summary) if note is None else note)
            if image is not None:
                stored = avatars.store(Path(services.settings.media_dir), image)
                await profile.set_avatar(session, services.urls, _document(services),
                                         actor.id, stored)
    except ValidationError as exc:
        field = "avatar" if image is not None and "image" in exc.reason else None
        raise unprocessable(exc.reason, field) from None
    async with services.sessionmaker() as session:
        refreshed = await session.get(Actor, person.id)
        if refreshed is None:
            raise not_found()
        return JSONResponse(await credential_account(session, request, caller, refreshed))


# -- anyone's account ---------------------------------------------------------------------


@endpoint("read:accounts", public=True)
async def account(request: Request, caller: Caller) -> Response:
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        found = await find_account(session, p.viewer, account_path(request))
        return JSONResponse(await p.account(found))


@endpoint("read:accounts", public=True)
async def lookup(request: Request, caller: Caller) -> Response:
    """An account known here by `name` or `name@host`, without asking other servers (as
    Mastodon's lookup skips WebFinger; /api/v2/search?resolve=true fetches)."""
    params = await read_params(request)
    raw = (params.text("acct", max_length=600) or "").strip().removeprefix("@")
    if not raw:
        raise unprocessable("acct is required: name or name@host", "acct")
    services = services_of(request)
    name, _, host = raw.partition("@")
    async with services.sessionmaker() as session:
        p = await presenter(session, request, caller)
        if not host or host.lower() == services.settings.domain.lower():
            found = await find_local(session, name)
        else:
            found = (await session.execute(select(Actor).where(
                func.lower(Actor.username) == name.lower(), Actor.domain == host.lower(),
                Actor.local.is_(False)).limit(1))).scalar_one_or_none()
        if found is None or not await shown_to(session, p.viewer, [found]):
            raise not_found()
        return JSONResponse(await p.account(found))


# -- their statuses ---------------------------------------------------------------------------


async def gated_page(p: Presenter, query: Select[Post], page: PageQuery
                     ) -> tuple[list[Post], list[int]]:
    """Up to `limit` posts of the query the viewer may see (newest first), and the ids read
    up to the last one shown (the Link header continues after them, hidden ones included)."""
    rows = list((await p.session.execute(
        paged(query, Post.id, page, scan=page.limit * 3))).scalars())
    shown = set(p.id for p in await p.visible(rows))
    taken: list[Post] = []
    read: list[int] = []
    for row in rows:  # in the order read: oldest first for min_id
        read.append(row.id)
        if row.id in shown:
            taken.append(row)
            if len(taken) == page.limit:
                break
    return newest_first(taken, page), read


def _statuses_of(actor: Actor, params: Params) -> ColumnElement[bool] | None:
    """Which posts an account's statuses are (None: nothing, as for only_media)."""
    if params.flag("only_media"):
        return None  # fedi posts carry no media attachments
    held = Post.group_id == actor.id if actor.type == "Group" else Post.author_id == actor.id
    where = and_(held, Post.deleted_at.is_(None))
    if params.flag("pinned"):
        if actor.type != "Group":
            return None
        where = and_(where, Post.pinned_at.is_not(None), Post.thread_id == Post.id)
    if params.flag("exclude_replies"):
        where = and_(where, Post.in_reply_to.is_(None))
    return where


@endpoint("read:statuses", public=True)
async def statuses(request: Request, caller: Caller) -> Response:
    params = await read_params(request)
    page = page_query(params)
    params.flag("exclude_reblogs")  # fedi has no reblogs by people: checked, then moot
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        actor = await find_account(session, p.viewer, account_path(request))
        where = _statuses_of(actor, params)
        if where is None:
            return JSONResponse([])
        posts, read = await gated_page(p, select(Post).where(where), page)
        body = await p.statuses(posts)
    link = link_header(services_of(request).settings.base_url, request.url.path, params, read)
    return JSONResponse(body, headers={"Link": link} if link else {})


# -- followers and following ------------------------------------------------------------------


async def _follows(request: Request, caller: Caller, *, followers: bool) -> Response:
    params = await read_params(request)
    page = page_query(params, maximum=80)
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        actor = await find_account(session, p.viewer, account_path(request))
        if actor.type == "Group" and not followers:
            return JSONResponse([])  # a group follows nobody
        if actor.type == "Group" and not await members_listed(session, p.viewer, actor):
            return JSONResponse([])
        ours, theirs = (Follow.target_id, Follow.follower_id) if followers else (
            Follow.follower_id, Follow.target_id)
        query = (select(Follow.id, Actor).join(Actor, Actor.id == theirs)
                 .where(ours == actor.id, Follow.state == "accepted"))
        rows = newest_first((await session.execute(paged(query, Follow.id, page))).all(), page)
        listed = await shown_to(session, p.viewer, [a for _, a in rows])
        if not followers and (p.person is None or p.person.id != actor.id):
            listed = [a for a in listed if await members_listed(session, p.viewer, a)]
        body = await p.accounts(listed)
    link = link_header(services_of(request).settings.base_url, request.url.path, params,
                       [int(i) for i, _ in rows])
    return JSONResponse(body, headers={"Link": link} if link else {})


@endpoint("read:accounts", public=True)
async def followers(request: Request, caller: Caller) -> Response:
    return await _follows(request, caller, followers=True)


@endpoint("read:accounts", public=True)
async def following(request: Request, caller: Caller) -> Response:
    """Whom the account follows; for a person, the groups they are in, each shown only
    where that group's member list would be (a private group's members see each other)."""
    return await _follows(request, caller, followers=False)


@endpoint("read:accounts", public=True)
async def nothing(request: Request, caller: Caller) -> Response:
    """Featured tags, lists and familiar followers of an account: fedi keeps none."""
    return JSONResponse([])


@endpoint("read:follows")
async def familiar_followers(request: Request, caller: Caller) -> Response:
    """Followers of each account whom the caller follows too: none told (Mastodon's shape,
    one entry per id asked)."""
    ids = (await read_params(request)).strings("id")[:40]
    return JSONResponse([{"id": i, "accounts": []} for i in ids])


ID = "/api/v1/accounts/{account_id:int}"
routes: list[BaseRoute] = [
    Route("/api/v1/accounts/verify_credentials", verify_credentials),
    Route("/api/v1/accounts/update_credentials", update_credentials, methods=["PATCH"]),
    Route("/api/v1/accounts/lookup", lookup),
    Route("/api/v1/accounts/familiar_followers", familiar_followers),
    Route(ID, account),
    Route(f"{ID}/statuses", statuses),
    Route(f"{ID}/followers", followers),
    Route(f"{ID}/following", following),
    Route(f"{ID}/featured_tags", nothing),
    Route(f"{ID}/lists", nothing),
    Route(f"{ID}/identity_proofs", nothing),
]
