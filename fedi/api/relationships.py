"""Relationships between the caller and other accounts: follow (join, for a group),
unfollow (leave), block, mute, their lists, and the join requests a moderator decides.

Following goes through the flows the web's buttons use: a group of this server through
groups.membership (open → member, approval → a request, invite → refused without one), a
group or person elsewhere through the Follow federation.following sends, a person here by
a plain accepted follow. Blocks and mutes are the person's own filter (accounts.relations).

Follow requests are the join requests of the groups the caller moderates, as accounts; the
id is the requester's account id. A person who asked to join two groups the caller
moderates is listed once, and authorizing (or rejecting) them decides every one of those
requests at once — the requests to groups the caller does not moderate are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.accounts import relations
from fedi.accounts.relations import Kind
from fedi.api.accounts import account_path, find_account, pending_requests
from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.errors import ApiError, not_found
from fedi.api.pagination import link_header, newest_first, page_query, paged
from fedi.api.params import read_params
from fedi.federation.following import follow_remote, unfollow_remote
from fedi.groups import moderation, modlog
from fedi.groups.membership import join_local_group, leave_local_group
from fedi.services import Services
from fedi.store.models import Actor, Follow, GroupRole, PersonRelation


async def relationships_of(session: AsyncSession, person: Actor, targets: Sequence[Actor]
                           ) -> list[dict[str, Any]]:
    """Mastodon's Relationship of `person` to each target, in order."""
    ids = [t.id for t in targets]
    if not ids:
        return []
    mine = dict((await session.execute(select(Follow.target_id, Follow.state).where(
        Follow.follower_id == person.id, Follow.target_id.in_(ids)))).all())
    theirs = dict((await session.execute(select(Follow.follower_id, Follow.state).where(
        Follow.target_id == person.id, Follow.follower_id.in_(ids)))).all())
    moderated = set((await session.execute(select(GroupRole.group_id).where(
        GroupRole.actor_id == person.id, GroupRole.group_id.in_(ids)))).scalars())
    set_by_me = await relations.relations(session, person, ids)
    blocked_me = set((await session.execute(select(PersonRelation.actor_id).where(
        PersonRelation.target_id == person.id, PersonRelation.actor_id.in_(ids),
        PersonRelation.kind == Kind.BLOCK.value))).scalars())
    found = []
    for target in targets:
        own = set_by_me.get(target.id, relations.Relations())
        following = mine.get(target.id) == "accepted" or target.id in moderated
        found.append({
            "id": str(target.id),
            "following": following,
            "showing_reblogs": following,
            "notifying": following and own.notifying,
            "languages": None,
            "followed_by": theirs.get(target.id) == "accepted",
            "blocking": own.blocking,
            "blocked_by": target.id in blocked_me,
            "muting": own.muting,
            "muting_notifications": own.muting and own.muting_notifications,
            "requested": not following and mine.get(target.id) == "pending",
            "requested_by": theirs.get(target.id) == "pending",
            "domain_blocking": False,
            "endorsed": False,
            "note": "",
        })
    return found


async def _answer(session: AsyncSession, person: Actor, target: Actor) -> Response:
    return JSONResponse((await relationships_of(session, person, [target]))[0])


@endpoint("read:follows")
async def relationships(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    params = await read_params(request)
    wanted = params.strings("id")[:40]
    async with services_of(request).sessionmaker() as session:
        p = await presenter(session, request, caller)
        targets = []
        for raw in wanted:
            try:
                targets.append(await find_account(session, p.viewer, raw))
            except ApiError:  # an id the caller may not know of is left out, as Mastodon
                continue
        return JSONResponse(await relationships_of(session, person, targets))


async def _follow(session: AsyncSession, services: Services, person: Actor, target: Actor
                  ) -> None:
    if target.local and target.type == "Group":
        await join_local_group(session, services.urls, target, person)
    elif target.local:
        await relations.follow_local_person(session, person, target)
    else:
        await follow_remote(session, services.urls, person, target)


async def _unfollow(session: AsyncSession, services: Services, person: Actor, target: Actor
                    ) -> None:
    if target.local and target.type == "Group":
        await leave_local_group(session, target, person)
    elif target.local:
        await relations.unfollow_local_person(session, person, target)
    else:
        await unfollow_remote(session, services.urls, person, target)


def _acting(change: str) -> Any:
    """A POST on /api/v1/accounts/:id/<change> for the caller, answered with the
    relationship after it; nothing changes when it is refused."""

    async def act(request: Request, caller: Caller) -> Response:
        services = services_of(request)
        async with services.sessionmaker() as session, session.begin():
            person = await session.get(Actor, caller.need_person().id)
            if person is None:
                raise not_found()
            p = await presenter(session, request, caller)
            target = await find_account(session, p.viewer, account_path(request))
            if change == "follow":
                await _follow(session, services, person, target)
                params = await read_params(request)
                if "notify" in params:
                    await relations.set_notify(session, person, target, params.flag("notify"))
            elif change == "unfollow":
                await _unfollow(session, services, person, target)
                await relations.set_notify(session, person, target, False)
            elif change in ("block", "mute"):
                params = await read_params(request)
                await relations.set_relation(
                    session, person, target, Kind(change),
                    notifications=params.flag("notifications", True))
            else:
                await relations.clear_relation(session, person, target,
                                               Kind(change.removeprefix("un")))
            return await _answer(session, person, target)

    act.__name__ = change
    scope = {"follow": "write:follows", "unfollow": "write:follows", "block": "write:blocks",
             "unblock": "write:blocks", "mute": "write:mutes", "unmute": "write:mutes"}[change]
    return endpoint(scope)(act)


async def _listed(request: Request, caller: Caller, kind: Kind) -> Response:
    person = caller.need_person()
    params = await read_params(request)
    page = page_query(params, maximum=80)
    async with services_of(request).sessionmaker() as session:
        query = (select(PersonRelation.id, Actor)
                 .join(Actor, Actor.id == PersonRelation.target_id)
                 .where(PersonRelation.actor_id == person.id,
                        PersonRelation.kind == kind.value))
        rows = newest_first((await session.execute(
            paged(query, PersonRelation.id, page))).all(), page)
        body = await (await presenter(session, request, caller)).accounts([a for _, a in rows])
    link = link_header(services_of(request).settings.base_url, request.url.path, params,
                       [int(i) for i, _ in rows])
    return JSONResponse(body, headers={"Link": link} if link else {})


@endpoint("read:blocks")
async def blocks(request: Request, caller: Caller) -> Response:
    return await _listed(request, caller, Kind.BLOCK)


@endpoint("read:mutes")
async def mutes(request: Request, caller: Caller) -> Response:
    return await _listed(request, caller, Kind.MUTE)


# -- join requests, for moderators ----------------------------------------------------------


@endpoint("read:follows")
async def follow_requests(request: Request, caller: Caller) -> Response:
    person = caller.need_person()
    params = await read_params(request)
    page = page_query(params, maximum=80)
    async with services_of(request).sessionmaker() as session:
        rows = newest_first((await session.execute(
            paged(pending_requests(person), Follow.id, page))).all(), page)
        unique = list({a.id: a for _, a in rows}.values())
        body = await (await presenter(session, request, caller)).accounts(unique)
    link = link_header(services_of(request).settings.base_url, request.url.path, params,
                       [f.id for f, _ in rows])
    return JSONResponse(body, headers={"Link": link} if link else {})


def _deciding(approve: bool) -> Any:
    async def decide(request: Request, caller: Caller) -> Response:
        """The use case `fedi mod approve|reject` and the moderation page call, with the
        same modlog entry, for each group of the caller's the requester asked to join."""
        services = services_of(request)
        async with services.sessionmaker() as session, session.begin():
            person = await session.get(Actor, caller.need_person().id)
            if person is None:
                raise not_found()
            raw = account_path(request)
            groups = list((await session.execute(
                select(Actor).join(Follow, Follow.target_id == Actor.id).where(
                    Follow.follower_id == int(raw), Follow.state == "pending",
                    Follow.target_id.in_(select(GroupRole.group_id).where(
                        GroupRole.actor_id == person.id))))).scalars()) if raw.isdigit() else []
            requester = await session.get(Actor, int(raw)) if groups else None
            if requester is None:
                raise not_found()
            by = modlog.Moderator(person.uri, person)
            for group in groups:
                if approve:
                    await moderation.approve(session, services.urls, group, requester)
                else:
                    await moderation.reject(session, services.urls, group, requester)
                await modlog.record(session, by, group, "approve" if approve else "reject",
                                    requester.uri)
            return await _answer(session, person, requester)

    decide.__name__ = "authorize" if approve else "reject"
    return endpoint("write:follows")(decide)


ID = "/api/v1/accounts/{account_id:int}"
REQUEST = "/api/v1/follow_requests/{account_id:int}"
routes: list[BaseRoute] = [
    Route("/api/v1/accounts/relationships", relationships),
    *(Route(f"{ID}/{change}", _acting(change), methods=["POST"])
      for change in ("follow", "unfollow", "block", "unblock", "mute", "unmute")),
    Route("/api/v1/blocks", blocks),
    Route("/api/v1/mutes", mutes),
    Route("/api/v1/follow_requests", follow_requests),
    Route(f"{REQUEST}/authorize", _deciding(True), methods=["POST"]),
    Route(f"{REQUEST}/reject", _deciding(False), methods=["POST"]),
]
