"""OAuth scopes of the Mastodon client API (pure).

A granted scope covers a needed one when they are equal or the granted one is its parent
(`read` covers `read:statuses`). `follow` is Mastodon's old umbrella for relationships and
still covers them. Unknown scopes are refused at registration and at the token endpoint,
so a token never carries a scope nothing checks.
"""

from __future__ import annotations

from collections.abc import Iterable

TOP = ("read", "write", "follow", "push", "profile")
READ = ("accounts", "blocks", "bookmarks", "favourites", "filters", "follows", "lists",
        "mutes", "notifications", "search", "statuses")
WRITE = ("accounts", "blocks", "bookmarks", "conversations", "favourites", "filters",
         "follows", "lists", "media", "mutes", "notifications", "reports", "statuses")
KNOWN: frozenset[str] = frozenset(
    [*TOP, *(f"read:{s}" for s in READ), *(f"write:{s}" for s in WRITE)]
)
# What the legacy `follow` scope stands for (Mastodon keeps it for old apps).
FOLLOW_COVERS = frozenset({"read:follows", "write:follows", "read:blocks", "write:blocks",
                           "read:mutes", "write:mutes"})
DEFAULT = "read"


class ScopeError(ValueError):
    pass


def parse(raw: str | Iterable[str] | None, *, default: str = DEFAULT) -> frozenset[str]:
    """Space- or plus-separated scopes (a list is accepted too); ScopeError names the
    unknown one."""
    if raw is None or raw == "" or raw == []:
        raw = default
    words = raw.replace("+", " ").split() if isinstance(raw, str) else [
        w for item in raw for w in str(item).replace("+", " ").split()]
    unknown = sorted(set(words) - KNOWN)
    if unknown:
        raise ScopeError(f"unknown scope {unknown[0]!r}; known: read, write, follow, push "
                         "and their read:/write: sub-scopes")
    return frozenset(words)


def covers(granted: frozenset[str], needed: str) -> bool:
    if needed in granted:
        return True
    parent = needed.split(":", 1)[0]
    if parent != needed and parent in granted:
        return True
    return "follow" in granted and needed in FOLLOW_COVERS


def within(asked: frozenset[str], allowed: frozenset[str]) -> bool:
    """Every asked scope is covered by what the app registered."""
    return all(covers(allowed, scope) for scope in asked)


def text(scopes: Iterable[str]) -> str:
    order = {s: i for i, s in enumerate(TOP)}
    return " ".join(sorted(set(scopes), key=lambda s: (order.get(s.split(":")[0], 9), s)))
