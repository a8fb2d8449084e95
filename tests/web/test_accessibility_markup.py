"""Every page's markup, read with html.parser, as a screen reader and the CSP need it: the
page's language, a skip link to the one <main>, header/nav/footer landmarks, a label for
every field, alt text on every image, and no inline style, event handler or script body.
(A real-browser axe-core check is in the browser tests.)"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib.resources import files
from urllib.parse import urlsplit

import httpx

from fedi.actors.local import create_group, find_local
from fedi.groups.posting import post_to_group
from tests.accounts.support import app, browser, log_in, sign_up

UNLABELLED_INPUTS = {"hidden", "submit", "button", "reset", "image"}


@dataclass
class Markup(HTMLParser):
    lang: str | None = None
    mains: int = 0
    main_id: str | None = None
    landmarks: set[str] = field(default_factory=set)
    first_link: str | None = None
    label_for: set[str] = field(default_factory=set)
    fields: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    inside_label: int = 0
    problems: list[str] = field(default_factory=list)
    _in_script: bool = False

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>: inline {name}")
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "main":
            self.mains += 1
            self.main_id = a.get("id")
        elif tag in ("header", "nav", "footer"):
            self.landmarks.add(tag)
        elif tag == "a" and self.first_link is None:
            self.first_link = a.get("href")
        elif tag == "label":
            self.inside_label += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag == "img" and not a.get("alt") and a.get("alt") != "":
            self.problems.append(f"<img src={a.get('src')!r}> has no alt")
        elif tag == "script":
            self._in_script = True
            if not a.get("src"):
                self.problems.append("a <script> without src (inline script)")
        if tag in ("input", "select", "textarea"):
            kind = (a.get("type") or "text").lower()
            if tag != "input" or kind not in UNLABELLED_INPUTS:
                a["_wrapped"] = "1" if self.inside_label else None
                self.fields.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.inside_label = max(0, self.inside_label - 1)
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("a <script> with a body (inline script)")

    def check(self, where: str) -> None:
        for tag, a in self.fields:
            labelled = (a.get("_wrapped") or a.get("aria-label") or a.get("aria-labelledby")
                        or (a.get("id") and a["id"] in self.label_for))
            if not labelled:
                self.problems.append(f"<{tag} name={a.get('name')!r}> has no label")
        assert self.lang == "en", where
        assert self.mains == 1 and self.main_id == "main", where
        assert self.first_link == "#main", f"{where}: the skip link comes first"
        assert {"header", "nav", "footer"} <= self.landmarks, where
        assert not self.problems, f"{where}: {self.problems}"


def check_page(page: httpx.Response) -> None:
    assert page.headers["content-type"].startswith("text/html"), page.url
    parser = Markup()
    parser.feed(page.text)
    parser.close()
    parser.check(f"{page.request.method} {page.url} ({page.status_code})")


async def test_every_page_has_landmarks_labels_and_no_inline_code(database_url: str) -> None:
    async with app(database_url) as fedi:
        urls = fedi.services.urls
        async with browser(fedi) as person:
            assert (await sign_up(person, "ann")).status_code == 303
            assert (await log_in(person, "ann")).status_code == 303
            async with fedi.services.sessionmaker() as session, session.begin():
                ann = await find_local(session, "ann")
                assert ann is not None
                town = await create_group(session, urls, "town", owner="ann",
                                          rules=["Be kind"])
                await session.flush()
                thread = await post_to_group(session, urls, ann, town, "Hello **all**",
                                             title="Welcome")
                await post_to_group(session, urls, ann, town, "A reply",
                                    reply_to=thread.post.uri)
            post_path = urlsplit(thread.post.uri).path
            anonymous_pages = [
                "/", "/about", "/login", "/signup", "/groups/town", post_path, "/users/ann",
                "/groups/town/remote-follow", "/lookup", "/no/such/page", "/reset",
            ]
            signed_in_pages = [
                "/", "/home", "/settings", "/notifications", "/groups/town", post_path,
                "/authorize_interaction", "/about", "/groups/town/remote-follow",
            ]
            for client, paths in ((fedi.http, anonymous_pages), (person, signed_in_pages)):
                for path in paths:
                    page = await client.get(path, follow_redirects=True)
                    assert page.status_code == (404 if path == "/no/such/page" else 200), path
                    check_page(page)


def test_the_checker_finds_what_it_looks_for() -> None:
    bad = ('<html><body><a href="/">x</a><header><nav></nav></header><main><p style="x">'
           '<input name="q"><img src="a.png"><button onclick="f()">Go</button>'
           '<script>alert(1)</script></main><main></main></body></html>')
    parser = Markup()
    parser.feed(bad)
    try:
        parser.check("bad page")
    except AssertionError as exc:
        caught = str(exc)
    else:
        raise AssertionError("the bad page passed")
    assert "bad page" in caught
    parser.lang, parser.mains, parser.main_id, parser.first_link = "en", 1, "main", "#main"
    parser.landmarks.add("footer")
    try:
        parser.check("bad page")
    except AssertionError as exc:
        caught = str(exc)
    for problem in ("inline style", "inline onclick", "has no label", "has no alt",
                    "inline script"):
        assert problem in caught, problem


def _luminance(hex_colour: str) -> float:
    digits = hex_colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_text_colours_contrast_with_the_white_page_and_no_font_is_fetched() -> None:
    css = (files("fedi") / "static" / "fedi.css").read_text()
    colours = re.findall(r"(?<![-\w])color:\s*(#[0-9a-fA-F]{3,6})\b", css)
    assert len(colours) >= 4
    for colour in colours:
        ratio = (1.0 + 0.05) / (_luminance(colour) + 0.05)
        assert ratio >= 4.5, f"{colour} on white is {ratio:.2f}:1"
    assert "@import" not in css and "url(" not in css and "@font-face" not in css
