"""Text and HTML for posts: everything stored or shown passes through here (SECURITY 18)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

ALLOWED_TAGS = {
    "p", "br", "a", "span", "strong", "b", "em", "i", "u", "s", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "class"}, "span": {"class"}}
URL_SCHEMES = {"http", "https", "mailto"}


# Built once: nh3.clean() converts its tag and attribute sets on every call, which cost five
# times the cleaning of a short post (bench.processing: every stored post).
_SANITIZER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=URL_SCHEMES,
    link_rel="nofollow noopener noreferrer",
)
_TEXT_ONLY = nh3.Cleaner(tags=set())


def sanitize_html(raw: str) -> str:
    return _SANITIZER.clean(raw)


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
    stripped = _TEXT_ONLY.clean(LINE_BREAKS.sub("\n", raw))
    return html.unescape(stripped).strip().strip(INVISIBLE).strip()


# -- Markdown ---------------------------------------------------------------------------------
# Post bodies are Markdown (CommonMark, plus ~~strike~~): raw HTML is shown as text, single
# newlines break lines as the plain-text posts before did, images stay links (no <img> is
# allowed), and only http(s) and mailto links become links. The result still goes through
# sanitize_html: the renderer is not the security boundary, nh3 is.
MARKDOWN_SCHEMES = frozenset({"http", "https", "mailto"})
# @name or @name@host, not inside a word or an e-mail address; names end on a letter or digit
# so that "@ann." ends a sentence rather than the name.
MENTION = re.compile(
    r"(?<![\w@/.])@([a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?)"
    r"(?:@([a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::\d{1,5})?))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Handle:
    """A mention as written: @name (host None) or @name@host."""

    name: str
    host: str | None

    @property
    def key(self) -> str:
        """How a handle is matched: case-insensitive, as WebFinger treats them."""
        return f"{self.name}@{self.host}".lower() if self.host else self.name.lower()

    def __str__(self) -> str:
        return f"@{self.name}@{self.host}" if self.host else f"@{self.name}"


def _link_ok(url: str) -> bool:
    return urlsplit(url.strip()).scheme.lower() in MARKDOWN_SCHEMES


def _outside_links(children: list[Token]) -> Iterator[tuple[int, Token]]:
    """The text tokens of an inline run that are not already inside a link."""
    depth = 0
    for index, child in enumerate(children):
        if child.type == "link_open":
            depth += 1
        elif child.type == "link_close":
            depth -= 1
        elif child.type == "text" and depth == 0:
            yield index, child


def _mention_tokens(text: str, links: Mapping[str, str]) -> list[Token]:
    out: list[Token] = []
    last = 0
    for match in MENTION.finditer(text):
        href = links.get(Handle(match.group(1), match.group(2)).key)
        if href is None:
            continue
        if match.start() > last:
            out.append(Token("text", "", 0, content=text[last:match.start()]))
        out.append(Token("link_open", "a", 1, attrs={"href": href, "class": "mention"}))
        out.append(Token("text", "", 0, content=match.group(0)))
        out.append(Token("link_close", "a", -1))
        last = match.end()
    if last < len(text):
        out.append(Token("text", "", 0, content=text[last:]))
    return out


def _link_mentions(state: StateCore) -> None:
    """Resolved mentions (state.env["mentions"]: handle key → actor URL) become links; code
    spans and existing links are left alone."""
    links: Mapping[str, str] = state.env.get("mentions") or {}
    if not links:
        return
    for token in state.tokens:
        if token.type != "inline" or not token.children:
            continue
        children = token.children
        for index, child in reversed(list(_outside_links(children))):
            children[index:index + 1] = _mention_tokens(child.content, links)


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True})
    md.enable("strikethrough").disable("image")
    md.validateLink = _link_ok  # type: ignore[method-assign]
    md.core.ruler.push("mentions", _link_mentions)
    return md


MARKDOWN = _markdown()


def mentions_in(text: str) -> list[Handle]:
    """The @mentions written in Markdown text, in order, once each (not in code or links)."""
    found: dict[str, Handle] = {}
    for token in MARKDOWN.parse(text):
        if token.type != "inline" or not token.children:
            continue
        for _, child in _outside_links(token.children):
            for match in MENTION.finditer(child.content):
                handle = Handle(match.group(1), match.group(2))
                found.setdefault(handle.key, handle)
    return list(found.values())


def markdown_to_html(text: str, mentions: Mapping[str, str] | None = None) -> str:
    """Markdown → sanitised HTML; `mentions` maps Handle.key to the linked actor's URL."""
    rendered = MARKDOWN.render(text.replace("\r\n", "\n"), {"mentions": dict(mentions or {})})
    return sanitize_html(rendered).strip()
