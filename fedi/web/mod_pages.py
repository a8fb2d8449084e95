"""The moderators' dashboard of a local group, its actions, and the public moderation log.

Each action is one POST route, checked in this order: signed in (else the login page), CSRF,
the group exists, the person is its owner or one of its moderators (else 403, or 404 for a
hidden group they are not in). The action then calls the use case `fedi mod` calls and
records the audit row under the person, in one transaction: a refusal changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedi.activitypub.parse import is_http_url
from fedi.actors.local import JOIN_POLICIES, PRIVACIES, REPLY_POLICIES, find_local
from fedi.admin import group_moderation
from fedi.content import html_to_text
from fedi.errors import FediError, ValidationError
from fedi.groups import group_settings, moderation, modlog
from fedi.groups.modlog import Moderator
from fedi.groups.roles import Standing, standing
from fedi.groups.threads import find_post
from fedi.services import Services
from fedi.store.models import Actor, Group, Post
from fedi.urls import GROUPS
from fedi.web.auth import checked_form, current_user, render, require_login, services_of

MAX_FIELD = 5000


@dataclass(frozen=True)
class Acting:
    services: Services
    session: AsyncSession
    group: Actor
    by: Moderator
    form: FormData


# An action returns (the audited target, the reason recorded), or None when its use case
# writes the audit rows itself.
Outcome = tuple[str, str | None] | None
Action = Callable[[Acting], Awaitable[Outcome]]


def _text(form: FormData, name: str, limit: int = MAX_FIELD) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    if len(value) > limit:
        raise ValidationError(f"the {name.replace('_', ' ')} is too long: at most {limit} "
                              "characters")
    return value.strip()


async def _person(a: Acting) -> Actor:
    """Whom the form names: a local user name, an actor id, or @name@host (as `fedi mod`)."""
    ref = _text(a.form, "actor", 2048)
    if not ref:
        raise ValidationError("say whom: a user name, @name@host or an actor's address")
    if "@" not in ref and "://" not in ref:
        found = await find_local(a.session, ref)
        if found is None:
            raise ValidationError(f"there is no local user {ref!r}")
        return found
    if "://" in ref:
        if not is_http_url(ref):
            raise ValidationError("an actor's address is an http(s) URL")
        return await a.services.resolver.actor(a.session, ref)
    return await a.services.resolver.resolve_handle(a.session, ref)


async def _post(a: Acting) -> Post:
    ref = _text(a.form, "post", 2048)
    post = await find_post(a.session, ref) if ref else None
    if post is None or post.group_id != a.group.id:
        raise ValidationError(f"there is no post {ref or '(none given)'} in "
                              f"{a.group.username}")
    return post


async def _approve(a: Acting) -> Outcome:
    person = await _person(a)
    await moderation.approve(a.session, a.services.urls, a.group, person)
    return person.uri, None


async def _reject(a: Acting) -> Outcome:
    person = await _person(a)
    await moderation.reject(a.session, a.services.urls, a.group, person)
    return person.uri, _text(a.form, "reason")


async def _approve_post(a: Acting) -> Outcome:
    post = await moderation.approve_post(a.session, a.services.urls, a.group,
                                         (await _post(a)).uri)
    return post.uri, None


async def _reject_post(a: Acting) -> Outcome:
    post = await moderation.reject_post(a.session, a.services.urls, a.group,
                                        (await _post(a)).uri)
    return post.uri, None


async def _resolve_report(a: Acting) -> Outcome:
    raw = _text(a.form, "report", 20)
    if not raw.isdigit():
        raise ValidationError("say which report")
    await group_moderation.resolve_report(
        a.session, a.services.urls, a.group, int(raw), action=_text(a.form, "resolution", 20),
        note=_text(a.form, "note"), by=a.by)
    return None


async def _ban(a: Acting) -> Outcome:
    person = await _person(a)
    reason = _text(a.form, "reason")
    days = _text(a.form, "days", 10).strip()
    until: float | None = None
    if days:
        try:
            until = time.time() + float(days) * 86400
        except ValueError:
            raise ValidationError(f"{days!r} is not a number of days") from None
    await moderation.ban(a.session, a.services.urls, a.group, person, by=a.by.actor,
                         reason=reason or None, expires_at=until)
    return person.uri, reason


async def _unban(a: Acting) -> Outcome:
    person = await _person(a)
    await moderation.unban(a.session, a.services.urls, a.group, person)
    return person.uri, None


async def _remove(a: Acting) -> Outcome:
    reason = _text(a.form, "reason")
    post = await moderation.remove_post(a.session, a.services.urls, a.group,
                                        (await _post(a)).uri, reason or None)
    return post.uri, reason


async def _restore(a: Acting) -> Outcome:
    post = await moderation.restore_post(a.session, a.services.urls, a.group,
                                         (await _post(a)).uri)
    return post.uri, None


def _locking(locked: bool) -> Action:
    async def act(a: Acting) -> Outcome:
        root = await moderation.set_locked(a.session, a.services.urls, a.group,
                                           (await _post(a)).uri, locked=locked)
        return root.uri, None
    return act


def _pinning(pinned: bool) -> Action:
    async def act(a: Acting) -> Outcome:
        post = await _post(a)
        await moderation.set_pinned(a.session, a.group, post, pinned=pinned,
                                    urls=a.services.urls)
        return post.uri, None
    return act


def _blocking(block: bool) -> Action:
    async def act(a: Acting) -> Outcome:
        domain = _text(a.form, "domain", 300)
        if not domain:
            raise ValidationError("say which domain")
        return await moderation.block_domain(a.session, a.group, domain, block=block), None
    return act


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


async def _settings(a: Acting) -> Outcome:
    threshold = _text(a.form, "report_threshold", 10) or "0"
    if not threshold.isdigit():
        raise ValidationError("the report threshold is a whole number, 0 for off")
    await group_settings.update(a.session, a.services.urls, a.group, group_settings.Changes(
        title=_text(a.form, "title"), summary=_text(a.form, "summary"),
        rules=_lines(_text(a.form, "rules")), questions=_lines(_text(a.form, "questions")),
        join_policy=_text(a.form, "join_policy", 20), privacy=_text(a.form, "privacy", 20),
        reply_policy=_text(a.form, "reply_policy", 20),
        premoderation=a.form.get("premoderation") == "on", report_threshold=int(threshold),
        allow_dislikes=a.form.get("allow_dislikes") == "on", icon=_text(a.form, "icon", 2048),
        banner=_text(a.form, "banner", 2048),
        default_visibility=_text(a.form, "default_visibility", 20),
    ))
    return a.group.uri, None


# The names are `fedi mod`'s: the audit log reads the same whichever way a moderator acted.
ACTIONS: dict[str, Action] = {
    "approve": _approve, "reject": _reject,
    "approve-post": _approve_post, "reject-post": _reject_post,
    "resolve-report": _resolve_report,
    "ban": _ban, "unban": _unban,
    "remove": _remove, "restore": _restore,
    "lock": _locking(True), "unlock": _locking(False),
    "pin": _pinning(True), "unpin": _pinning(False),
    "block-domain": _blocking(True), "unblock-domain": _blocking(False),
    "settings": _settings,
}


async def _refused(request: Request, status: int, text: str) -> Response:
    heading = {403: "Not allowed", 404: "Not found"}.get(status, "Nothing changed")
    return await render(request, "message.html", {"heading": heading, "text": text},
                        status=status)


async def _moderating(
    request: Request, session: AsyncSession
) -> tuple[Actor, Moderator] | Response:
    """The group and the signed-in person acting for it, or the page that refuses."""
    person = await current_user(request)
    group = await find_local(session, request.path_params["name"])
    config = await session.get(Group, group.id) if group and group.type == "Group" else None
    if group is None or config is None or person is None:
        return await _refused(request, 404, "There is no such group here.")
    found = await standing(session, group, person)
    if not found.moderates:
        if config.privacy == "hidden" and found is not Standing.MEMBER:
            return await _refused(request, 404, "There is no such group here.")
        return await _refused(request, 403, "Only this group's moderators can do that: "
                              "nothing was changed.")
    return group, Moderator(person.uri, person)


def _back(form: FormData, group: Actor) -> str:
    """Where to go after an action: a path on this site, else the dashboard."""
    raw = form.get("next")
    if isinstance(raw, str) and raw.startswith("/") and not raw.startswith(("//", "/\\")):
        return raw
    return f"/{GROUPS}/{group.username}/moderation"


def _handler(name: str, action: Action) -> Callable[[Request], Awaitable[Response]]:
    @require_login
    async def handle(request: Request) -> Response:
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        services = services_of(request)
        try:
            async with services.sessionmaker() as session, session.begin():
                found = await _moderating(request, session)
                if isinstance(found, Response):
                    return found
                group, by = found
                outcome = await action(Acting(services, session, group, by, form))
                if outcome is not None:
                    await modlog.record(session, by, group, name, outcome[0], reason=outcome[1])
        except FediError as exc:
            return await _refused(request, 400, f"Nothing was changed: {exc.reason}.")
        return RedirectResponse(_back(form, group), status_code=303)

    handle.__name__ = f"mod_{name.replace('-', '_')}"
    return handle


@require_login
async def dashboard(request: Request) -> Response:
    services = services_of(request)
    async with services.sessionmaker() as session:
        found = await _moderating(request, session)
        if isinstance(found, Response):
            return found
        group, _ = found
        config = await session.get(Group, group.id)
        board = await group_moderation.load(session, group)
    return await render(request, "mod_dashboard.html", {
        "group": group, "config": config, "board": board,
        "rules": "\n".join(json.loads(config.rules or "[]")) if config else "",
        "questions": "\n".join(json.loads(config.questions or "[]")) if config else "",
        "summary_text": html_to_text(group.summary or ""),
        "join_policies": JOIN_POLICIES, "privacies": PRIVACIES,
        "reply_policies": REPLY_POLICIES, "resolutions": tuple(group_moderation.REPORT_ACTIONS),
    })


async def log_page(request: Request) -> Response:
    """The group's moderation log: anyone may read a public group's; a private or hidden
    group's only its members. Reasons quoting reports stay with the moderators."""
    services = services_of(request)
    person = await current_user(request)
    async with services.sessionmaker() as session:
        group = await find_local(session, request.path_params["name"])
        config = await session.get(Group, group.id) if group and group.type == "Group" else None
        found = await standing(session, group, person) if group and person else Standing.NONE
        if group is None or config is None or (
                config.privacy != "public" and not found.may_post):
            return await _refused(request, 404, "There is no such group here.")
        lines = await modlog.read(session, group, moderator=found.moderates)
    return await render(request, "mod_log.html", {
        "group": group, "lines": lines, "moderator": found.moderates})


PREFIX = f"/{GROUPS}/{{name:str}}/moderation"
routes = [
    Route(PREFIX, dashboard),
    *(Route(f"{PREFIX}/{name}", _handler(name, action), methods=["POST"])
      for name, action in ACTIONS.items()),
    Route(f"/{GROUPS}/{{name:str}}/modlog", log_page),
]
