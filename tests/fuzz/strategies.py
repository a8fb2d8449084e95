"""Hypothesis strategies for hostile ActivityPub documents.

Every field an activity or object may carry gets either a plausible value (the ids of the
world under test, so handlers get past their first checks) or a hostile one: a random JSON
type, deep nesting, odd unicode, huge or tiny numbers, lists where strings are expected.
Every URL is on loopback or is not http(s) at all, so fuzzing never leaves the machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from fedi.activitypub.vocab import PUBLIC
from fedi.federation.dispatch import HANDLERS

CLOSED = "http://127.0.0.1:1"  # nothing listens on port 1: a fetch there fails at once


@dataclass(frozen=True)
class Ids:
    """The world's ids: the local instance, its group and user, and one remote signer."""

    base: str
    group: str
    user: str
    remote: str
    actor: str  # the remote actor who signs everything
    post: str  # a local post in the group


ODD_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=()) | st.sampled_from(
        ["\u202e", "\u2028", "\ufeff", "\ud800", "\U0001f600", "\u0301", "\x00", "\""]
    ),
    max_size=40,
) | st.sampled_from(["<script>alert(1)</script>", "%00", "\\u0000", "a" * 5000])
HUGE_NUMBERS = st.sampled_from(
    [2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 1e308, -1e-308, 0.1, -0.0, 2**53 + 1]
)
# Markers that `encode` swaps for raw JSON no encoder would write: 5,000 levels of nesting, a
# 5,000-digit number, a bare NaN.
RAW = {
    '"\\u0000deep"': b"[" * 5000 + b"]" * 5000,
    '"\\u0000bignum"': b"9" * 5000,
    '"\\u0000nan"': b"NaN",
}
SCALARS = st.none() | st.booleans() | st.integers() | HUGE_NUMBERS | st.floats(
    allow_nan=False, allow_infinity=False) | ODD_TEXT | st.sampled_from(
    ["\x00deep", "\x00bignum", "\x00nan"])
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """A value nested a few to a few hundred levels, in lists or objects."""
    depth = draw(st.integers(1, 300))
    value: Any = draw(SCALARS)
    for _ in range(depth):
        value = [value] if draw(st.booleans()) else {"a": value}
    return value


HOSTILE = ANY_JSON | deep()


def urls(ids: Ids) -> st.SearchStrategy[str]:
    paths = st.sampled_from(["", "/", "/posts/1", "/notes/x", "/users/x", "/contexts/1",
                             "/copies/99999999999999999999", "/groups/cats/followers"])
    return st.sampled_from([
        ids.base, ids.group, ids.user, ids.remote, ids.actor, ids.post, f"{ids.actor}/followers",
        f"{ids.group}/followers", f"{ids.base}/posts/1", f"{ids.remote}/notes/1", PUBLIC,
        "as:Public", "Public", CLOSED, "javascript:alert(1)", f"javascript://{ids.remote[7:]}/x",
        "data:text/html,<script>alert(1)</script>", "file:///etc/passwd", "//127.0.0.1/x", "",
    ]) | st.builds(lambda base, path: base + path, st.sampled_from([ids.remote, ids.base]), paths)


def field(ids: Ids, plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible, often hostile: a URL, a list of them, or anything at all."""
    return st.one_of(plausible, plausible, st.lists(plausible, max_size=3), HOSTILE)


TYPES = st.sampled_from(sorted(HANDLERS)) | st.sampled_from(
    ["Note", "Page", "Article", "Question", "Tombstone", "Person", "Group", "Move", "Block",
     "Add", "Remove", "Question"]
) | ODD_TEXT


POST_FIELDS = ("id", "type", "attributedTo", "content", "name", "summary", "inReplyTo", "to",
               "cc", "audience", "context", "url", "tag", "attachment", "published", "updated",
               "sensitive", "source", "contentMap", "@context", "quoteUrl")


@st.composite
def post_objects(draw: st.DrawFn, ids: Ids) -> dict[str, Any]:
    """A post that would be accepted, with a few of its fields made hostile."""
    url = urls(ids)
    posts = st.sampled_from([f"{ids.remote}/notes/{n}" for n in range(4)] + [ids.post])
    doc: dict[str, Any] = {
        "id": draw(posts), "type": draw(st.sampled_from(["Note", "Page", "Article", "Question"])),
        "attributedTo": ids.actor, "content": draw(ODD_TEXT),
        "to": draw(st.sampled_from([[ids.group, PUBLIC], [ids.group], [PUBLIC], []])),
        "cc": [f"{ids.group}/followers"], "audience": ids.group,
    }
    if draw(st.booleans()):
        doc["inReplyTo"] = draw(posts)
    hostile = {
        "inReplyTo": field(ids, url), "to": field(ids, url), "cc": field(ids, url),
        "audience": field(ids, url), "context": field(ids, url), "url": field(ids, url),
        "attributedTo": field(ids, url), "id": field(ids, url), "type": TYPES | HOSTILE,
        "tag": field(ids, st.fixed_dictionaries(
            {"type": st.sampled_from(["Mention", "Hashtag"]) | TYPES, "href": url,
             "name": ODD_TEXT})),
        "attachment": field(ids, st.fixed_dictionaries({"type": TYPES, "url": url})),
    }
    for key in draw(st.lists(st.sampled_from(POST_FIELDS), unique=True, max_size=3)):
        doc[key] = draw(hostile.get(key, ODD_TEXT | HOSTILE))
    if draw(st.booleans()):
        doc[draw(ODD_TEXT)] = draw(HOSTILE)
    return doc


@st.composite
def activities(draw: st.DrawFn, ids: Ids, depth: int = 0) -> dict[str, Any]:
    """An activity by the signing remote actor (so signature and host checks pass), of any
    handled type, whose object is a post, another activity (Announce(Update) and the like),
    an id, or something hostile."""
    url = urls(ids)
    handled = st.sampled_from(sorted(HANDLERS))
    kind = draw(handled if depth else st.one_of(handled, handled, handled, TYPES))
    objects: list[st.SearchStrategy[Any]] = [post_objects(ids), post_objects(ids), url, HOSTILE]
    if depth < 2:
        objects.append(activities(ids, depth + 1))
    doc: dict[str, Any] = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{ids.actor}/activities/{draw(st.uuids()).hex}",
        "type": kind if draw(st.integers(0, 9)) else draw(st.lists(TYPES, min_size=1, max_size=2)),
        "actor": ids.actor if depth == 0 else draw(st.just(ids.actor) | url | HOSTILE),
        "object": draw(st.one_of(*objects)),
        "to": [ids.group, PUBLIC], "cc": [f"{ids.group}/followers"],
    }
    optional = {
        "to": field(ids, url), "cc": field(ids, url), "target": field(ids, url),
        "audience": field(ids, url), "content": ODD_TEXT | HOSTILE, "published": HOSTILE,
        "result": HOSTILE, "origin": field(ids, url), "instrument": HOSTILE,
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=3)):
        doc[key] = draw(optional[key])
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    """As a remote server would send it (ensure_ascii escapes odd characters, as many do)."""
    body = json.dumps(doc).encode()
    for marker, raw in RAW.items():
        body = body.replace(marker.encode(), raw)
    return body
