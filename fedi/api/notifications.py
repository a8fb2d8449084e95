"""Notifications as Mastodon serves them: list (types[], exclude_types[], account_id,
pagination), one, dismiss, clear, and the unread count.

fedi's notice kinds (fedi.groups.notices) and Mastodon's types:
- reply, mention → `mention` (Mastodon calls a reply to you a mention too);
- favourite, reblog, follow, follow_request → the same names;
- join_approved, join_refused, post_held, post_approved, post_removed have no Mastodon
  type, and clients drop or choke on types they do not know, so they are left out unless a
  client names them in types[] (fedi's own UI can); they come as their own names, with the
  group as the account and a `fedi` object carrying the kind, group and reason.

Each notification's post is asked of the privacy gate again when it is read: a mention or
favourite whose post the person may no longer see is left out; other kinds show without it.
Accounts the person blocks, or mutes with notifications, are left out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.entities import Presenter, iso
from fedi.api.errors import not_found, unprocessable
from fedi.api.pagination import page_query
from fedi.api.params import Params, read_params
from fedi.api.timelines import left_out, paged_json, read_gated
from fedi.groups import notices
from fedi.store.models import Actor, Notification, Post

MASTODON_TYPE = {
    notices.REPLY: "mention", notices.MENTION: "mention", notices.FAVOURITE: "favourite",
    notices.REBLOG: "reblog", notices.STATUS: "status",
    notices.FOLLOW: "follow", notices.FOLLOW_REQUEST: "follow_request",
}
FEDI_ONLY = (notices.JOIN_APPROVED, notices.JOIN_REFUSED, notices.POST_HELD,
             notices.POST_APPROVED, notices.POST_REMOVED)
NEEDS_STATUS = {notices.REPLY, notices.MENTION, notices.FAVOURITE, notices.REBLOG,
                notices.STATUS}
MAX_ID = 2**63 - 1


def type_of(kind: str) -> str:
    return MASTODON_TYPE.get(kind, kind)


def kinds_for(params: Params) -> list[str]:
    """The notice kinds a request asks for: types[] (Mastodon's names, or fedi's own kinds),
    else every kind with a Mastodon type; minus exclude_types[]."""
    wanted = set(params.strings("types"))
    kinds = [k for k in [*MASTODON_TYPE, *FEDI_ONLY] if type_of(k) in wanted] if wanted else (
        list(MASTODON_TYPE))
    excluded = set(params.strings("exclude_types"))
    return [k for k in kinds if type_of(k) not in excluded]


def _row_id(raw: str) -> int:
    if not raw.isdigit() or int(raw) > MAX_ID:
        raise not_found()
    return int(raw)


class Shown:
    """Notifications made into entities for one person, a page at a time."""

    def __init__(self, session: AsyncSession, shown: Presenter, hidden: set[int]) -> None:
        self.session = session
        self.presenter = shown
        self.hidden = hidden
        self.posts: dict[int, Post] = {}
        self.visible: set[int] = set()

    async def keep(self, rows: list[Notification]) -> list[Notification]:
        """The notifications to show: from accounts not left out, and with their post when
        their kind is about one."""
        ids = {r.post_id for r in rows if r.post_id is not None} - self.posts.keys()
        if ids:
            found = list((await self.session.execute(
                select(Post).where(Post.id.in_(ids)))).scalars())
            self.posts.update({p.id: p for p in found})
            self.visible.update(p.id for p in await self.presenter.visible(found))
        return [r for r in rows if r.actor_id is not None and r.actor_id not in self.hidden
                and (r.kind not in NEEDS_STATUS or r.post_id in self.visible)]

    async def entities(self, rows: list[Notification]) -> list[dict[str, Any]]:
        actor_ids = {r.actor_id for r in rows if r.actor_id is not None} | {
            r.group_id for r in rows if r.group_id is not None}
        actors = {a.id: a for a in (await self.session.execute(
            select(Actor).where(Actor.id.in_(actor_ids)))).scalars()} if actor_ids else {}
        accounts = dict(zip(actors, await self.presenter.accounts(list(actors.values())),
                            strict=True))
        posts = [self.posts[r.post_id] for r in rows
                 if r.post_id is not None and r.post_id in self.visible]
        statuses = {int(s["id"]): s for s in await self.presenter.statuses(
            list({p.id: p for p in posts}.values()))}
        return [self._entity(r, accounts, statuses) for r in rows
                if r.actor_id in accounts]

    @staticmethod
    def _entity(row: Notification, accounts: dict[int, dict[str, Any]],
                statuses: dict[int, dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": str(row.id),
            "type": type_of(row.kind),
            "group_key": f"ungrouped-{row.id}",
            "created_at": iso(row.created_at),
            "account": accounts[row.actor_id or 0],
            "status": statuses.get(row.post_id) if row.post_id is not None else None,
            "fedi": {
                "kind": row.kind,
                "group": accounts.get(row.group_id) if row.group_id is not None else None,
                "reason": row.reason,
                "unread": row.read_at is None,
            },
        }


async def _shown(session: AsyncSession, request: Request, caller: Caller, person: Actor
                 ) -> Shown:
    return Shown(session, await presenter(session, request, caller),
                 await left_out(session, person, notifications=True))


@endpoint("read:notifications")
async def listing(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    params = await read_params(request)
    page = page_query(params, default=40, maximum=80)  # Mastodon's for notifications
    query = select(Notification).where(
        Notification.recipient_id == person.id, Notification.kind.in_(kinds_for(params)))
    account = params.text("account_id")
    if account:
        if not account.isdigit() or int(account) > MAX_ID:
            raise unprocessable("account_id is not an id", "account_id")
        query = query.where(Notification.actor_id == int(account))
    async with services_of(request).sessionmaker() as session:
        shown = await _shown(session, request, caller, person)
        rows, read = await read_gated(session, query, Notification.id, page, shown.keep,
                                      lambda n: n.id)
        items = await shown.entities(rows)
    return paged_json(request, params, items, read)


@endpoint("read:notifications")
async def one(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    notice_id = _row_id(request.path_params["id"])
    async with services_of(request).sessionmaker() as session:
        row = await session.get(Notification, notice_id)
        if row is None or row.recipient_id != person.id:
            raise not_found()
        shown = await _shown(session, request, caller, person)
        found = await shown.entities(await shown.keep([row]))
    if not found:
        raise not_found()
    return JSONResponse(found[0])


@endpoint("read:notifications")
async def unread(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    async with services_of(request).sessionmaker() as session:
        count = await notices.unread_count(session, person.id)
    return JSONResponse({"count": count})


async def _dismiss(request: Request, caller: Caller, raw: str | None) -> Response:
    person = caller.need_person()
    if raw is None:
        raise unprocessable("give the id of the notification to dismiss", "id")
    notice_id = _row_id(raw)
    async with services_of(request).sessionmaker() as session, session.begin():
        if not await notices.dismiss(session, person, notice_id):
            raise not_found()
    return JSONResponse({})


@endpoint("write:notifications")
async def dismiss(request: Request, caller: Caller) -> Response:
    return await _dismiss(request, caller, request.path_params["id"])


@endpoint("write:notifications")
async def dismiss_legacy(request: Request, caller: Caller) -> Response:
    """POST /api/v1/notifications/dismiss with `id` (Mastodon before 3.1; old apps)."""
    return await _dismiss(request, caller, (await read_params(request)).text("id"))


@endpoint("write:notifications")
async def clear(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    async with services_of(request).sessionmaker() as session, session.begin():
        await notices.dismiss(session, person)
    return JSONResponse({})


routes: list[BaseRoute] = [
    Route("/api/v1/notifications", listing),
    Route("/api/v1/notifications/unread_count", unread),
    Route("/api/v1/notifications/clear", clear, methods=["POST"]),
    Route("/api/v1/notifications/dismiss", dismiss_legacy, methods=["POST"]),
    Route("/api/v1/notifications/{id:str}", one),
    Route("/api/v1/notifications/{id:str}/dismiss", dismiss, methods=["POST"]),
]
