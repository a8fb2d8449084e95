"""Joining and leaving groups from the browser, over the same flows as the CLI and the inbox.

A group of this server: groups.membership (open → member at once; approval → a request with
the answers to the group's questions, seen by `fedi mod requests`; invite → with an invite).
A group elsewhere (a Lemmy community, another fedi): the Follow `fedi follow` sends.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedi.activitypub.parse import is_http_url
from fedi.actors.local import find_local
from fedi.errors import FediError, ValidationError
from fedi.federation.following import follow_remote, unfollow_remote
from fedi.groups.membership import join_local_group, leave_local_group, parse_questions
from fedi.groups.roles import Standing, standing
from fedi.services import Services
from fedi.store.models import Actor, Group
from fedi.urls import GROUPS
from fedi.web.auth import checked_form, current_user, render, require_login, services_of

MAX_ANSWERS = 4000  # what groups.membership keeps of a remote Follow's answers too


async def _person(request: Request) -> Actor:
    person = await current_user(request)
    if person is None:
        raise HTTPException(401)
    return person


async def _local_group(session: AsyncSession, name: str) -> tuple[Actor, Group] | None:
    group = await find_local(session, name)
    config = await session.get(Group, group.id) if group and group.type == "Group" else None
    return (group, config) if group is not None and config is not None else None


async def _remote_group(services: Services, session: AsyncSession, uri: str) -> Actor:
    """A group of another server by its id: known here (looked up before), else fetched."""
    if not is_http_url(uri) or services.urls.is_local(uri):
        raise ValidationError("give the address of a group on another server")
    group = await services.resolver.actor(session, uri)
    if group.type != "Group":
        raise ValidationError(f"{uri} is not a group")
    return group


def _answers(form: FormData, questions: list[str]) -> str | None:
    """The answers as one text, each under its question, as a moderator reads them."""
    given = [a.strip() if isinstance(a, str) else "" for a in form.getlist("answer")]
    parts = [f"{q}\n{a}" for q, a in zip(questions, given, strict=False) if a]
    text = "\n\n".join(parts) if questions else "\n\n".join(a for a in given if a)
    if len(text) > MAX_ANSWERS:
        raise ValidationError(f"the answers are {len(text)} characters; the limit is "
                              f"{MAX_ANSWERS}")
    return text or None


def _page(group: Actor, config: Group | None, membership: str, **extra: Any) -> dict[str, Any]:
    return {
        "group": group, "config": config, "membership": membership,
        "questions": parse_questions(config.questions) if config else [],
        "rules": json.loads(config.rules or "[]") if config else [],
        "answers": [], "invite": "", "error": None, **extra,
    }


def _membership(found: Standing) -> str:
    return "moderator" if found.moderates else found.value


# -- groups of this server --------------------------------------------------------------------


@require_login
async def join_local(request: Request) -> Response:
    services = services_of(request)
    person = await _person(request)
    async with services.sessionmaker() as session:
        found = await _local_group(session, request.path_params["name"])
        if found is None:
            return await render(request, "message.html", {
                "heading": "Not found", "text": "There is no such group here."}, status=404)
        group, config = found
        context = _page(group, config, _membership(await standing(session, group, person)))
    if request.method == "GET":
        return await render(request, "join.html", context)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    context["answers"] = [a for a in form.getlist("answer") if isinstance(a, str)]
    invite = form.get("invite")
    context["invite"] = invite if isinstance(invite, str) else ""
    try:
        answers = _answers(form, context["questions"])
        async with services.sessionmaker() as session, session.begin():
            row = await join_local_group(
                session, services.urls, group, await session.merge(person),
                invite=context["invite"].strip() or None, answers=answers,
            )
            state = row.state
    except FediError as exc:
        context["error"] = exc.reason
        return await render(request, "join.html", context, status=400)
    if state == "pending":
        return await render(request, "message.html", {
            "heading": "Request sent",
            "text": f"The moderators of {group.name or group.username} will read your "
                    "request; you will be told when they answer."})
    return RedirectResponse(group.uri, status_code=303)


@require_login
async def leave_local(request: Request) -> Response:
    services = services_of(request)
    person = await _person(request)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    async with services.sessionmaker() as session, session.begin():
        found = await _local_group(session, request.path_params["name"])
        if found is None:
            return await render(request, "message.html", {
                "heading": "Not found", "text": "There is no such group here."}, status=404)
        left = await leave_local_group(session, found[0], await session.merge(person))
    if not left:
        return await render(request, "message.html", {
            "heading": "Not a member", "text": "You are not in this group: nothing changed."},
            status=400)
    return RedirectResponse(found[0].uri, status_code=303)


# -- groups of other servers ------------------------------------------------------------------


def _group_field(request: Request, form: FormData | None) -> str:
    raw = form.get("group") if form is not None else None
    value = raw if isinstance(raw, str) else request.query_params.get("group", "")
    return value.strip()[:2048]


@require_login
async def join_remote(request: Request) -> Response:
    services = services_of(request)
    person = await _person(request)
    form: FormData | None = None
    if request.method == "POST":
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        form = checked
    uri = _group_field(request, form)
    try:
        async with services.sessionmaker() as session, session.begin():
            group = await _remote_group(services, session, uri)
            if form is None:
                return await render(request, "join.html", _page(group, None, "none"))
            row = await follow_remote(session, services.urls, await session.merge(person),
                                      group)
            state = row.state
    except FediError as exc:
        return await render(request, "message.html", {
            "heading": "Cannot join", "text": f"Nothing was changed: {exc.reason}."},
            status=400)
    name = group.name or group.username
    return await render(request, "message.html", {
        "heading": "Request sent" if state == "pending" else "Joined",
        "text": f"Your request to join {name} was sent to its server; you are a member once "
                "it accepts." if state == "pending" else f"You are a member of {name}."})


@require_login
async def leave_remote(request: Request) -> Response:
    services = services_of(request)
    person = await _person(request)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    uri = _group_field(request, form)
    async with services.sessionmaker() as session, session.begin():
        group = (await session.execute(
            select(Actor).where(Actor.uri == uri, Actor.local.is_(False))
        )).scalar_one_or_none()
        left = group is not None and await unfollow_remote(
            session, services.urls, await session.merge(person), group)
    if not left:
        return await render(request, "message.html", {
            "heading": "Not a member", "text": "You are not in this group: nothing changed."},
            status=400)
    return await render(request, "message.html", {
        "heading": "Left", "text": "You left the group; its server has been told."})


routes = [
    Route(f"/{GROUPS}/{{name:str}}/join", join_local, methods=["GET", "POST"]),
    Route(f"/{GROUPS}/{{name:str}}/leave", leave_local, methods=["POST"]),
    Route("/join", join_remote, methods=["GET", "POST"]),
    Route("/leave", leave_remote, methods=["POST"]),
]
