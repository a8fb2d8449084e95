"""Text and HTML for posts: everything stored or shown passes through here (SECURITY 18)."""

from __future__ import annotations

import html
import re

import nh3

ALLOWED_TAGS = {
    "p", "br", "a", "span", "strong", "b", "em", "i", "u", "s", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "class"}, "span": {"class"}}
URL_SCHEMES = {"http", "https", "mailto"}


def sanitize_html(raw: str) -> str:
    return nh3.clean(
        raw,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
    )


def text_to_html(text: str) -> str:
    """Plain text → paragraphs; blank lines split paragraphs, single newlines become <br>."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.strip().split("\n")) + "</p>"
        for p in paragraphs
    )


LINE_BREAKS = re.compile(r"<br\s*/?>|</p\s*>", re.IGNORECASE)
# Invisible characters some servers send for an empty content warning (Misskey: U+200B).
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"


def html_to_text(raw: str) -> str:
    """Visible text of HTML (for titles and summaries); <br> and </p> end lines."""
    stripped = nh3.clean(LINE_BREAKS.sub("\n", raw), tags=set())
    return html.unescape(stripped).strip().strip(INVISIBLE).strip()
