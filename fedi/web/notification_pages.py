"""The notifications page and its mark-read forms. Thin: fedi.groups.notices records, reads
and asks the privacy gate; this shapes what a person sees."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedi.groups import notices
from fedi.store.models import Actor
from fedi.web.auth import checked_form, current_user, render, require_login, services_of
from fedi.web.pages import link_of, page_of
from fedi.web.params import non_negative, row_id

# Why a post waits, as its author reads it (the held reasons of groups.admission / reports).
HELD_BECAUSE = {
    "premoderation": "the group's moderators approve new posts first",
    "reply-approval": "replies to that post wait for a moderator's approval",
    "reports": "members reported it; a moderator will look at it",
}


@dataclass(frozen=True)
class Link:
    text: str
    url: str


@dataclass(frozen=True)
class Shown:
    """One notification as the page shows it."""

    id: int
    unread: bool
    when: float
    who: Link | None
    group: Link | None
    kind: str
    reason: str | None
    post: Link | None  # None: there is no post, or the reader may no longer see it
    had_post: bool
    excerpt: str


def _actor_link(actor: Actor | None) -> Link | None:
    """Where this server shows the person or group (a remote one on the lookup page)."""
    if actor is None:
        return None
    name = actor.name or actor.username
    return Link(name if actor.local else f"{name} (@{actor.username}@{actor.domain})",
                page_of(actor))


def _post_link(notice: notices.Notice) -> Link | None:
    """The post's permalink: where this server shows it with its thread, at the post."""
    post, thread = notice.post, notice.thread
    if post is None:
        return None
    title = f"“{thread.name}”" if thread is not None and thread.name else "the post"
    if thread is not None and thread.id != post.id and thread.name:
        title = f"the reply in {title}"
    return Link(title, f"{link_of(post)}#p{post.id}")


def _reason(notice: notices.Notice) -> str | None:
    if notice.reason is None:
        return None
    if notice.kind == notices.POST_HELD:
        return HELD_BECAUSE.get(notice.reason, notice.reason)
    return notice.reason


def _shown(notice: notices.Notice) -> Shown:
    return Shown(
        id=notice.id, unread=notice.unread, when=notice.created_at,
        who=_actor_link(notice.actor), group=_actor_link(notice.group),
        kind=notice.kind, reason=_reason(notice), post=_post_link(notice),
        had_post=notice.had_post, excerpt=notice.excerpt,
    )


@require_login
async def notifications(request: Request) -> Response:
    user = await current_user(request)
    if user is None:  # require_login has sent them to log in
        return RedirectResponse("/login", status_code=303)
    services = services_of(request)
    before = non_negative(request.query_params.get("before"))
    async with services.sessionmaker() as session:
        found = await notices.page(session, user, before=before)
        unread = await notices.unread_count(session, user.id)
    return await render(request, "notifications.html", {
        "notices": [_shown(n) for n in found.notices],
        "older": found.older, "before": before, "unread": unread,
    })


async def mark_read(request: Request) -> Response:
    """Mark one notification read (`id`), or all of them; back to the page it was sent from."""
    user = await current_user(request)
    if user is None:
        return RedirectResponse("/login?m=expired", status_code=303)
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    raw = form.get("id")
    notice_id = None
    if isinstance(raw, str) and raw:
        notice_id = row_id(raw)
        if notice_id is None:
            return await render(request, "message.html", {
                "heading": "No such notification",
                "text": "Nothing was changed: that is not one of your notifications."},
                status=400)
    async with services_of(request).sessionmaker() as session, session.begin():
        await notices.mark_read(session, user, notice_id)
    before = form.get("before")
    page = non_negative(before) if isinstance(before, str) else None
    return RedirectResponse(
        "/notifications" + (f"?before={page}" if page else ""), status_code=303)


routes = [
    Route("/notifications", notifications),
    Route("/notifications/read", mark_read, methods=["POST"]),
]
