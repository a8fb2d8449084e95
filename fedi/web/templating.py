"""The Jinja environment every page renders with (templates ship inside the package)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib.resources import files

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from fedi.activitypub.parse import is_http_url
from fedi.content import sanitize_html

# Templates and the stylesheet ship inside the package (package data), found through the
# import system: a wheel or a container serves pages from any working directory.
# auto_reload off: templates do not change under a running server, and checking each one's
# mtime on every include costs a stat per post on a long thread.
templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.PackageLoader("fedi", "templates"), autoescape=jinja2.select_autoescape(),
    auto_reload=False,
))
STYLESHEET = "fedi.css"
# Read once at import: it is small, and a missing file fails at start, not on a page view.
STYLESHEET_BYTES = (files("fedi") / "static" / STYLESHEET).read_bytes()


def href(*candidates: object) -> str:
    """The first http(s) URL among the candidates, else "#": a link on a page is never
    `javascript:`, `data:` or anything else a browser would run (SECURITY 20; stored URLs
    are checked too, this is the second line)."""
    return next((c for c in candidates if isinstance(c, str) and is_http_url(c)), "#")


templates.env.filters["href"] = href


def unread_notifications(request: Request) -> int:
    """The signed-in person's unread count, read when web.auth looked up who is signed in
    (one indexed COUNT in that same query session): no query while a template renders."""
    return int(request.state._state.get("unread_notifications", 0))


templates.env.globals["unread_notifications"] = unread_notifications


def is_admin(request: Request) -> bool:
    """Whether the signed-in person is an instance admin (read with the sign-in by web.auth)."""
    return bool(request.state._state.get("is_admin", False))


templates.env.globals["is_admin"] = is_admin


def _moment(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def iso_time(timestamp: float) -> str:
    """For <time datetime>: machine-readable, UTC."""
    return _moment(timestamp).isoformat(timespec="seconds").replace("+00:00", "Z")


def exact_time(timestamp: float) -> str:
    """For the title (shown on hover): the exact time, UTC."""
    return _moment(timestamp).strftime("%Y-%m-%d %H:%M UTC")


AGO_UNITS = ((365 * 86400, "year"), (30 * 86400, "month"), (7 * 86400, "week"),
             (86400, "day"), (3600, "hour"), (60, "minute"))


def ago(timestamp: float) -> str:
    """A human date: "3 hours ago", "just now"."""
    seconds = max(0.0, time.time() - timestamp)
    for size, unit in AGO_UNITS:
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"


TIME_TAG = Markup('<time datetime="{}" title="{}">{}</time>')


def time_tag(timestamp: float) -> Markup:
    """<time> with the human date, the exact time on hover: one call per post (a macro of
    three filters cost a sixth of a long thread page)."""
    return TIME_TAG.format(iso_time(timestamp), exact_time(timestamp), ago(timestamp))


templates.env.filters["ago"] = ago
templates.env.filters["time_tag"] = time_tag
templates.env.filters["iso_time"] = iso_time
templates.env.filters["exact_time"] = exact_time


def bio(summary: str | None) -> Markup:
    """An actor's bio as HTML: stored as paragraphs (local) or as the remote server sent it,
    cleaned on the way out either way, so no script or javascript: link reaches a page."""
    return Markup(sanitize_html(summary or ""))  # noqa: S704 -- cleaned by nh3 just above


templates.env.filters["bio"] = bio
