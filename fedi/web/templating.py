"""The Jinja environment every page renders with (templates ship inside the package)."""

from __future__ import annotations

from importlib.resources import files

import jinja2
from starlette.templating import Jinja2Templates

from fedi.activitypub.parse import is_http_url

# Templates and the stylesheet ship inside the package (package data), found through the
# import system: a wheel or a container serves pages from any working directory.
templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.PackageLoader("fedi", "templates"), autoescape=jinja2.select_autoescape(),
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
