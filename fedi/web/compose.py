"""Writing from the browser: new threads, replies, edits, deletions, votes and reports.

Thin over the use cases the CLI and the inbox use (groups.posting, groups.reactions,
moderation.reports): a web post federates exactly as `fedi post` does. Every form is
CSRF-checked; a refused post re-shows the form with what was typed and the reason, and
writes nothing. Compose forms carry a one-time id (signed with the form's CSRF token) that
becomes the post's id, so sending the same form twice cannot post twice.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedi.accounts.tokens import derived
from fedi.actors.local import REPLY_POLICIES, find_local
from fedi.content import html_to_text, markdown_to_html
from fedi.errors import FediError, ValidationError
from fedi.federation.reporting import report_post
from fedi.groups.mentions import find_mentioned
from fedi.groups.posting import MAX_TEXT, MAX_TITLE, delete_post, edit_post, post_to_group
from fedi.groups.reactions import vote
from fedi.groups.viewers import facts_for, viewer_for
from fedi.moderation.reports import MAX_COMMENT
from fedi.privacy.access import can_view
from fedi.privacy.visibility import (
    GroupPrivacy,
    Visibility,
    check_allowed_in_group,
    default_for_group,
)
from fedi.store.models import Actor, Circle, Group, Post
from fedi.urls import GROUPS, new_id
from fedi.web.auth import checked_form, csrf_token, current_user, render, require_login
from fedi.web.auth import services_of as _services
from fedi.web.templating import templates

NONCE = re.compile(r"^([0-9a-f]{20,40})\.([0-9a-f]{32})$")
# Every form's fields fit with room to spare (the post limit is in characters; UTF-8 may
# take up to four bytes for each).
MAX_FORM = 4 * MAX_TEXT + 16 * 1024
BASE_VISIBILITIES = ("public", "unlisted", "members", "moderators", "mentioned")


def form_nonce(csrf: str) -> str:
    """A fresh one-time id for a compose form, bound to this browser's CSRF token."""
    nonce = new_id()
    return f"{nonce}.{derived(csrf, 'compose:' + nonce)[:32]}"


# Forms in the shared partials (_post_actions.html) draw their own one-time id.
templates.env.globals["form_nonce"] = form_nonce


async def _nonce_id(request: Request, form: FormData) -> str | None:
    raw = form.get("nonce")
    match = NONCE.match(raw) if isinstance(raw, str) else None
    if match is None:
        return None
    expected = derived(await csrf_token(request), "compose:" + match.group(1))[:32]
    return match.group(1) if hmac.compare_digest(expected, match.group(2)) else None


def _text(form: FormData, name: str, limit: int) -> str:
    """A field as typed, cut at `limit` (limits are checked by the use cases, with a reason
    a person can act on: the cut only stops a huge form from going further)."""
    value = form.get(name)
    return value.replace("\r\n", "\n")[:limit] if isinstance(value, str) else ""


def _local_path(raw: str, default: str) -> str:
    """Where to go back to: a path on this site only, never an open redirect."""
    if raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return default


async def _person(request: Request) -> Actor:
    """The signed-in person of a route behind require_login."""
    person = await current_user(request)
    if person is None:
        raise HTTPException(401)
    return person


def _back(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


@dataclass(frozen=True)
class Target:
    """A post a signed-in person acts on, with its group and author."""

    post: Post
    group: Actor
    author: Actor


async def _target(session: AsyncSession, request: Request, person: Actor) -> Target | None:
    """The post in the path, if this person may see it (else None: a 404, as for a missing
    one)."""
    post = await session.get(Post, request.path_params["post_id"])
    if post is None or post.deleted_at is not None or post.group_id is None:
        return None
    if not can_view(await facts_for(session, post), await viewer_for(session, person.uri)):
        return None
    group = await session.get(Actor, post.group_id)
    author = await session.get(Actor, post.author_id)
    if group is None or author is None:
        return None
    return Target(post, group, author)


async def _not_found(request: Request) -> Response:
    return await render(request, "message.html", {
        "heading": "Not found", "text": "There is no such post, or it is not yours to see."},
        status=404)


# -- choices on the compose form --------------------------------------------------------------


async def _visibilities(session: AsyncSession, person: Actor, group: Actor,
                        config: Group | None) -> list[str]:
    privacy = GroupPrivacy(config.privacy) if config else GroupPrivacy.PUBLIC
    allowed = []
    for name in BASE_VISIBILITIES:
        try:
            check_allowed_in_group(Visibility(name), privacy)
        except FediError:
            continue
        allowed.append(name)
    circles = await session.execute(
        select(Circle.name).where(Circle.owner_id.in_([person.id, group.id])).order_by(Circle.name)
    )
    return allowed + [f"circle:{name}" for name in dict.fromkeys(circles.scalars())]


def _default_visibility(config: Group | None) -> str:
    if config is None:
        return Visibility.PUBLIC.value
    return default_for_group(GroupPrivacy(config.privacy), config.default_visibility).value


async def _preview(session: AsyncSession, person: Actor, body: str) -> Markup:
    """The body as it will be shown, mentions linked where known here (nothing fetched)."""
    found = await find_mentioned(session, body, domain=person.domain, resolver=None)
    return Markup(markdown_to_html(body, found.links))  # noqa: S704 - sanitised by nh3


# -- new thread and reply ---------------------------------------------------------------------


async def _local_group(session: AsyncSession, name: str) -> tuple[Actor, Group] | None:
    group = await find_local(session, name)
    if group is None or group.type != "Group":
        return None
    config = await session.get(Group, group.id)
    return (group, config) if config is not None else None


async def _compose_context(
    session: AsyncSession, person: Actor, group: Actor, config: Group | None,
    form: FormData | None, parent: Target | None,
) -> dict[str, Any]:
    fields = form or FormData()
    return {
        "group": group, "config": config, "parent": parent,
        "title": _text(fields, "title", MAX_TITLE + 1),
        "body": _text(fields, "body", MAX_TEXT + 1),
        "visibility": _text(fields, "visibility", 80) or _default_visibility(config),
        "replies": _text(fields, "replies", 16) or (config.reply_policy if config else "members"),
        "visibilities": await _visibilities(session, person, group, config),
        "reply_policies": REPLY_POLICIES, "max_text": MAX_TEXT, "max_title": MAX_TITLE,
        "nonce": _text(fields, "nonce", 200) or None, "preview": None, "error": None,
        "already": None,
    }


async def _submit(
    request: Request, person: Actor, group: Actor, config: Group | None, form: FormData,
    parent: Target | None,
) -> Response:
    """Preview or post the compose form (new thread when `parent` is None)."""
    services = _services(request)
    async with services.sessionmaker() as session:
        context = await _compose_context(session, person, group, config, form, parent)
        if form.get("action") == "preview":
            context["preview"] = await _preview(session, person, context["body"])
            return await render(request, "compose.html", context)
    nonce = await _nonce_id(request, form)
    if nonce is None:
        context["error"] = ("This form has expired or was not made by this site: "
                            "nothing was posted. Check your text and post again.")
        context["nonce"] = None
        return await render(request, "compose.html", context, status=400)
    uri = services.urls.post(nonce)
    try:
        async with services.sessionmaker() as session, session.begin():
            if await _exists(session, uri):
                raise _AlreadyPosted(uri)
            published = await post_to_group(
                session, services.urls, await session.merge(person), group, context["body"],
                reply_to=parent.post.uri if parent else None,
                title=(context["title"].strip() or None) if parent is None else None,
                visibility=context["visibility"] if parent is None else None,
                replies=context["replies"], resolver=services.resolver, post_id=nonce,
            )
    except _AlreadyPosted:
        return await _already(request, context, uri)
    except IntegrityError:
        return await _already(request, context, uri)  # the same form, sent twice at once
    except FediError as exc:
        context["error"] = exc.reason
        return await render(request, "compose.html", context, status=400)
    if published.post.held:
        return await render(request, "message.html", {
            "heading": "Waiting for a moderator",
            "text": "Your post was received; a moderator of the group will look at it "
                    "before the others see it."}, status=202)
    return _back(published.post.uri)


class _AlreadyPosted(Exception):
    pass


async def _exists(session: AsyncSession, uri: str) -> bool:
    return (await session.execute(select(Post.id).where(Post.uri == uri))).first() is not None


async def _already(request: Request, context: dict[str, Any], uri: str) -> Response:
    context.update(already=uri, error="This form was already sent: the post exists, and "
                   "nothing was posted again.")
    context["nonce"] = None
    return await render(request, "compose.html", context, status=409)


@require_login
async def new_thread(request: Request) -> Response:
    services = _services(request)
    async with services.sessionmaker() as session:
        found = await _local_group(session, request.path_params["name"])
    if found is None:
        return await _not_found(request)
    group, config = found
    form: FormData | None = None
    if request.method == "POST":
        checked = await checked_form(request, MAX_FORM)
        if isinstance(checked, Response):
            return checked
        form = checked
    person = await _person(request)
    if form is not None:
        return await _submit(request, person, group, config, form, None)
    async with services.sessionmaker() as session:
        context = await _compose_context(session, person, group, config, None, None)
    return await render(request, "compose.html", context)


@require_login
async def reply(request: Request) -> Response:
    services = _services(request)
    person = await _person(request)
    async with services.sessionmaker() as session:
        target = await _target(session, request, person)
        config = await session.get(Group, target.group.id) if target else None
    if target is None:
        return await _not_found(request)
    if request.method == "POST":
        form = await checked_form(request, MAX_FORM)
        if isinstance(form, Response):
            return form
        return await _submit(request, person, target.group, config, form, target)
    async with services.sessionmaker() as session:
        context = await _compose_context(session, person, target.group, config, None, target)
    return await render(request, "compose.html", context)


# -- edit and delete one's own post -----------------------------------------------------------


def _source(post: Post) -> str:
    source = json.loads(post.document).get("source")
    if isinstance(source, dict) and isinstance(source.get("content"), str):
        return str(source["content"])
    return html_to_text(post.content)


async def _own(request: Request) -> tuple[Actor, Target] | Response:
    person = await _person(request)
    async with _services(request).sessionmaker() as session:
        target = await _target(session, request, person)
    if target is None or target.post.author_id != person.id or not target.post.local:
        return await _not_found(request)
    return person, target


@require_login
async def edit(request: Request) -> Response:
    own = await _own(request)
    if isinstance(own, Response):
        return own
    person, target = own
    context: dict[str, Any] = {"target": target, "body": _source(target.post), "error": None,
                               "preview": None, "max_text": MAX_TEXT}
    if request.method == "GET":
        return await render(request, "edit.html", context)
    form = await checked_form(request, MAX_FORM)
    if isinstance(form, Response):
        return form
    context["body"] = _text(form, "body", MAX_TEXT + 1)
    services = _services(request)
    if form.get("action") == "preview":
        async with services.sessionmaker() as session:
            context["preview"] = await _preview(session, person, context["body"])
        return await render(request, "edit.html", context)
    try:
        async with services.sessionmaker() as session, session.begin():
            post = await edit_post(session, services.urls, await session.merge(person),
                                   target.post.uri, context["body"])
    except FediError as exc:
        context["error"] = exc.reason
        return await render(request, "edit.html", context, status=400)
    return _back(post.uri)


@require_login
async def delete(request: Request) -> Response:
    own = await _own(request)
    if isinstance(own, Response):
        return own
    person, target = own
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    if form.get("confirm") != "yes":
        return await render(request, "edit.html", {
            "target": target, "body": _source(target.post), "preview": None,
            "max_text": MAX_TEXT,
            "delete_error": "Tick “Yes, delete this post” to delete it: nothing was deleted.",
        }, status=400)
    services = _services(request)
    try:
        async with services.sessionmaker() as session, session.begin():
            await delete_post(session, services.urls, await session.merge(person),
                              target.post.uri)
    except FediError as exc:
        return await render(request, "message.html", {
            "heading": "Not deleted", "text": exc.reason}, status=400)
    return await render(request, "message.html", {
        "heading": "Deleted", "text": "Your post was deleted, here and on the servers that "
        "had it."})


# -- votes and reports ------------------------------------------------------------------------


async def _vote(request: Request, kind: str) -> Response:
    person = await _person(request)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    services = _services(request)
    try:
        async with services.sessionmaker() as session, session.begin():
            target = await _target(session, request, person)
            if target is None:
                raise ValidationError("there is no such post")
            await vote(session, services.urls, await session.merge(person), target.post, kind)
            back = target.post.uri if target.post.local else "/"
    except FediError as exc:
        status = 404 if exc.reason == "there is no such post" else 400
        return await render(request, "message.html", {
            "heading": "Not counted", "text": f"Nothing was changed: {exc.reason}."},
            status=status)
    return _back(_local_path(_text(form, "next", 2048), back))


@require_login
async def like(request: Request) -> Response:
    return await _vote(request, "Like")


@require_login
async def dislike(request: Request) -> Response:
    return await _vote(request, "Dislike")


@require_login
async def report(request: Request) -> Response:
    person = await _person(request)
    services = _services(request)
    async with services.sessionmaker() as session:
        target = await _target(session, request, person)
    if target is None:
        return await _not_found(request)
    context: dict[str, Any] = {"target": target, "comment": "", "error": None,
                               "max_comment": MAX_COMMENT}
    if request.method == "GET":
        return await render(request, "report.html", context)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    context["comment"] = _text(form, "comment", MAX_COMMENT + 1)
    if len(context["comment"]) > MAX_COMMENT:
        context["error"] = (f"The comment is {len(context['comment'])} characters or more; "
                            f"the limit is {MAX_COMMENT}. Nothing was sent.")
        return await render(request, "report.html", context, status=400)
    async with services.sessionmaker() as session, session.begin():
        await report_post(session, await session.merge(person), target.post,
                          context["comment"] or None)
    return await render(request, "message.html", {
        "heading": "Report sent", "text": "Thank you: the group's moderators and this "
        "server's admins will look at it."})


routes = [
    Route(f"/{GROUPS}/{{name:str}}/new", new_thread, methods=["GET", "POST"]),
    Route("/posts/{post_id:int}/reply", reply, methods=["GET", "POST"]),
    Route("/posts/{post_id:int}/edit", edit, methods=["GET", "POST"]),
    Route("/posts/{post_id:int}/delete", delete, methods=["POST"]),
    Route("/posts/{post_id:int}/like", like, methods=["POST"]),
    Route("/posts/{post_id:int}/dislike", dislike, methods=["POST"]),
    Route("/posts/{post_id:int}/report", report, methods=["GET", "POST"]),
]
