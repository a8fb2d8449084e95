"""Mastodon entities (Account, Status, Relationship …) built for a batch at once.

`Presenter` serves one request: it loads counts, reactions and parents for a whole page in a
few queries, and only ever renders posts the privacy gate lets the viewer see (callers pass
posts through `visible` first; `statuses` drops any the gate refuses, as a second guard).

Visibility on the wire is one of Mastodon's four (strict clients reject a fifth); the exact
fedi visibility and reply rule are in the `fedi` extension object, as Pleroma and Friendica
extend their entities.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.content import html_to_text, sanitize_html, text_to_html
from fedi.groups.reading import Gate, gate_for
from fedi.privacy.access import Viewer
from fedi.store.models import Actor, Bookmark, Follow, Group, Post, Reaction

WIRE_VISIBILITY = {
    "public": "public", "unlisted": "unlisted", "members": "private",
    "moderators": "private", "circle": "private", "mentioned": "direct",
}
DEFAULT_AVATAR = "/static/default-avatar.png"
DEFAULT_HEADER = "/static/default-header.png"
BOT_TYPES = ("Service", "Application")
COUNTS_TTL = 60.0  # seconds an embedded account's counts may be old
COUNTS_KEPT = 50_000
_COUNTS: dict[tuple[str, int], tuple[float, tuple[int, int, int]]] = {}  # (db, actor)


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def iso_date(moment: float) -> str:
    """Mastodon gives accounts' created_at at midnight (a day, not a moment)."""
    day = datetime.fromtimestamp(moment, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def acct(actor: Actor) -> str:
    return actor.username if actor.local else f"{actor.username}@{actor.domain}"


def with_title(title: str | None, content: str) -> str:
    """A thread's title above its text, unless the title is the text's first line (a thread
    without a title takes its first line as one, as Lemmy does)."""
    if not title:
        return content
    first = next(iter(html_to_text(content).splitlines()), "")
    if " ".join(w for w in first.split() if not w.startswith("@")).startswith(title):
        return content
    return f"<p><strong>{html.escape(title)}</strong></p>{content}"


PARAGRAPH_END = re.compile(r"</p\s*>", re.IGNORECASE)


def plain_note(summary: str | None) -> str:
    """A bio as its author typed it: paragraphs apart by a blank line (so a client that
    sends `source.note` back unchanged changes nothing)."""
    return html_to_text(PARAGRAPH_END.sub("</p>\n", summary or ""))


def note_html(actor: Actor) -> str:
    """The bio as HTML. Ours is kept as escaped paragraphs (profile and group settings)
    or, from the CLI, as plain text: both come out as paragraphs. Another server's is
    cleaned as its posts are."""
    if actor.local:
        text = plain_note(actor.summary)
        return text_to_html(text) if text else ""
    return sanitize_html(actor.summary or "")


def _tags(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document.get("tag")
    return [t for t in found if isinstance(t, dict)] if isinstance(found, list) else []


def _document(post: Post) -> dict[str, Any]:
    try:
        found = json.loads(post.document)
    except (ValueError, TypeError):
        return {}
    return found if isinstance(found, dict) else {}


class Presenter:
    def __init__(self, session: AsyncSession, base_url: str, viewer: Viewer,
                 person: Actor | None) -> None:
        self.session = session
        self.base_url = base_url
        self.viewer = viewer
        self.person = person

    # -- accounts ---------------------------------------------------------------------------

    async def _counts(self, actors: Sequence[Actor], *, fresh: bool = True
                      ) -> dict[int, tuple[int, int, int]]:
        """Followers, following and statuses per actor. Accounts embedded in a page of
        statuses take counts up to COUNTS_TTL old from this process's cache: counting a
        busy group's posts for every page cost hundreds of milliseconds at 100,000 posts
        (bench/api_reads), and apps show those numbers only on a profile, which is fresh."""
        now = time.monotonic()
        database = str(getattr(self.session.bind, "url", ""))
        cached: dict[int, tuple[int, int, int]] = {}
        for actor in actors if not fresh else ():
            entry = _COUNTS.get((database, actor.id))
            if entry is not None and entry[0] > now:
                cached[actor.id] = entry[1]
        found = await self._count([a for a in actors if a.id not in cached])
        if len(_COUNTS) > COUNTS_KEPT:
            _COUNTS.clear()
        for actor_id, counts in found.items():
            _COUNTS[(database, actor_id)] = (now + COUNTS_TTL, counts)
        return {**cached, **found}

    async def _count(self, actors: Sequence[Actor]) -> dict[int, tuple[int, int, int]]:
        ids = [a.id for a in actors]
        if not ids:
            return {}
        followers = dict((await self.session.execute(
            select(Follow.target_id, func.count()).where(
                Follow.target_id.in_(ids), Follow.state == "accepted")
            .group_by(Follow.target_id))).all())
        following = dict((await self.session.execute(
            select(Follow.follower_id, func.count()).where(
                Follow.follower_id.in_(ids), Follow.state == "accepted")
            .group_by(Follow.follower_id))).all())
        authored = dict((await self.session.execute(
            select(Post.author_id, func.count()).where(
                Post.author_id.in_(ids), Post.deleted_at.is_(None), Post.held.is_(None))
            .group_by(Post.author_id))).all())
        groups = [a.id for a in actors if a.type == "Group"]
        if groups:  # a group's statuses are the threads and replies it holds
            held = dict((await self.session.execute(
                select(Post.group_id, func.count()).where(
                    Post.group_id.in_(groups), Post.deleted_at.is_(None), Post.held.is_(None),
                    Post.visibility.in_(("public", "unlisted")))
                .group_by(Post.group_id))).all())
            authored.update({k: v for k, v in held.items() if k is not None})
        return {i: (followers.get(i, 0), following.get(i, 0), authored.get(i, 0)) for i in ids}

    async def _groups(self, actors: Sequence[Actor]) -> dict[int, Group]:
        ids = [a.id for a in actors if a.type == "Group" and a.local]
        if not ids:
            return {}
        rows = (await self.session.execute(select(Group).where(Group.actor_id.in_(ids)))).scalars()
        return {g.actor_id: g for g in rows}

    async def accounts(self, actors: Sequence[Actor], *, fresh: bool = True
                       ) -> list[dict[str, Any]]:
        unique = list({a.id: a for a in actors}.values())
        counts = await self._counts(unique, fresh=fresh)
        groups = await self._groups(unique)
        made = {a.id: self._account(a, counts.get(a.id, (0, 0, 0)), groups.get(a.id))
                for a in unique}
        return [made[a.id] for a in actors]

    async def account(self, actor: Actor) -> dict[str, Any]:
        return (await self.accounts([actor]))[0]

    def _account(self, actor: Actor, counts: tuple[int, int, int], group: Group | None
                 ) -> dict[str, Any]:
        followers, following, statuses = counts
        locked = actor.manually_approves_followers or (
            group is not None and group.join_policy != "open")
        avatar = actor.icon or f"{self.base_url}{DEFAULT_AVATAR}"
        header = (group.banner if group is not None and group.banner else None) or (
            f"{self.base_url}{DEFAULT_HEADER}")
        note = note_html(actor)
        if actor.type == "Group":  # Mastodon apps post into a group by mentioning it
            note += (f"<p>Mention @{html.escape(actor.username)}@{html.escape(actor.domain)}"
                     " in a post to post here.</p>")
        return {
            "id": str(actor.id),
            "username": actor.username,
            "acct": acct(actor),
            "display_name": actor.name or "",
            "locked": locked,
            "bot": actor.type in BOT_TYPES,
            "group": actor.type == "Group",
            "discoverable": True,
            "indexable": actor.type == "Group",
            "noindex": False,
            "created_at": iso_date(actor.created_at),
            "note": note,
            "url": actor.url or actor.uri,
            "uri": actor.uri,
            "avatar": avatar,
            "avatar_static": avatar,
            "header": header,
            "header_static": header,
            "followers_count": followers,
            "following_count": following,
            "statuses_count": statuses,
            "last_status_at": None,
            "emojis": [],
            "fields": [],
            "roles": [],
        }

    # -- statuses ---------------------------------------------------------------------------

    async def gate(self, posts: Iterable[Post]) -> Gate:
        return await gate_for(self.session, self.viewer, posts)

    async def visible(self, posts: Sequence[Post]) -> list[Post]:
        """The posts this viewer may see, in the same order."""
        gate = await self.gate(posts)
        return [p for p in posts if p.deleted_at is None and gate.sees(p.id)]

    async def _by_ids(self, ids: set[int]) -> dict[int, Actor]:
        if not ids:
            return {}
        rows = (await self.session.execute(select(Actor).where(Actor.id.in_(ids)))).scalars()
        return {a.id: a for a in rows}

    async def _mine(self, posts: Sequence[Post]) -> tuple[dict[int, set[str]], set[int]]:
        if self.person is None or not posts:
            return {}, set()
        ids = [p.id for p in posts]
        reacted: dict[int, set[str]] = {}
        for post_id, kind in (await self.session.execute(
            select(Reaction.post_id, Reaction.type).where(
                Reaction.actor_id == self.person.id, Reaction.post_id.in_(ids)))).all():
            reacted.setdefault(post_id, set()).add(kind)
        marked = set((await self.session.execute(
            select(Bookmark.post_id).where(
                Bookmark.actor_id == self.person.id, Bookmark.post_id.in_(ids)))).scalars())
        return reacted, marked

    async def _reblogs(self, posts: Sequence[Post]) -> dict[int, int]:
        ids = [p.id for p in posts]
        if not ids:
            return {}
        return dict((await self.session.execute(
            select(Reaction.post_id, func.count()).where(
                Reaction.post_id.in_(ids), Reaction.type == "Announce")
            .group_by(Reaction.post_id))).all())

    async def statuses(self, posts: Sequence[Post]) -> list[dict[str, Any]]:
        """Status entities for the posts the gate lets this viewer see (others dropped)."""
        shown = await self.visible(posts)
        parents_by_uri: dict[str, Post] = {}
        wanted = {p.in_reply_to for p in shown if p.in_reply_to}
        if wanted:
            for parent in (await self.session.execute(
                    select(Post).where(Post.uri.in_(wanted)))).scalars():
                parents_by_uri[parent.uri] = parent
        actors = await self._by_ids(
            {p.author_id for p in shown} | {p.group_id for p in shown if p.group_id}
            | {p.author_id for p in parents_by_uri.values()})
        rendered = dict(zip(
            actors, await self.accounts(list(actors.values()), fresh=False), strict=True))
        reacted, marked = await self._mine(shown)
        reblogs = await self._reblogs(shown)
        named = await self._mentioned(shown)
        return [
            self._status(post, rendered, actors, parents_by_uri.get(post.in_reply_to or ""),
                         reacted.get(post.id, set()), post.id in marked,
                         reblogs.get(post.id, 0), named)
            for post in shown
        ]

    async def _mentioned(self, posts: Sequence[Post]) -> dict[str, Actor]:
        """The accounts the posts' Mention tags name, by URI (known here; others left out)."""
        uris = {str(t["href"]) for p in posts for t in _tags(_document(p))
                if t.get("type") == "Mention" and isinstance(t.get("href"), str)}
        if not uris:
            return {}
        rows = (await self.session.execute(select(Actor).where(Actor.uri.in_(uris)))).scalars()
        return {a.uri: a for a in rows}

    async def status(self, post: Post) -> dict[str, Any] | None:
        found = await self.statuses([post])
        return found[0] if found else None

    def _status(self, post: Post, accounts: dict[int, dict[str, Any]],
                actors: dict[int, Actor], parent: Post | None, reacted: set[str],
                bookmarked: bool, reblogs: int, named: dict[str, Actor]) -> dict[str, Any]:
        document = _document(post)
        tags = _tags(document)
        mentioned = [named[t["href"]] for t in tags
                     if t.get("type") == "Mention" and t.get("href") in named]
        mentions = [
            {"id": str(a.id), "username": a.username, "acct": acct(a), "url": a.url or a.uri}
            for a in {a.id: a for a in mentioned}.values()
        ]
        hashtags = [
            {"name": str(t.get("name", "")).lstrip("#"), "url": str(t.get("href") or "")}
            for t in tags if t.get("type") == "Hashtag"
        ]
        content = with_title(post.name, post.content or "")
        group = actors.get(post.group_id) if post.group_id else None
        return {
            "id": str(post.id),
            "uri": post.uri,
            "url": document.get("url") if isinstance(document.get("url"), str) else post.uri,
            "created_at": iso(post.published),
            "edited_at": iso(post.updated),
            "account": accounts[post.author_id],
            "content": content,
            "text": None,
            "visibility": WIRE_VISIBILITY.get(post.visibility, "private"),
            "sensitive": bool(post.summary),
            "spoiler_text": post.summary or "",
            "media_attachments": [],
            "application": None,
            "mentions": mentions,
            "tags": hashtags,
            "emojis": [],
            "reblogs_count": reblogs,
            "favourites_count": post.like_count,
            "replies_count": post.reply_count,
            "in_reply_to_id": str(parent.id) if parent is not None else None,
            "in_reply_to_account_id": str(parent.author_id) if parent is not None else None,
            "reblog": None,
            "poll": None,
            "card": None,
            "language": None,
            "favourited": "Like" in reacted,
            "reblogged": "Announce" in reacted,
            "muted": False,
            "bookmarked": bookmarked,
            "pinned": False,
            "filtered": [],
            "fedi": {
                "visibility": post.visibility,
                "reply_policy": post.reply_policy,
                "title": post.name,
                "group": accounts[group.id] if group is not None else None,
                "thread_id": str(post.thread_id) if post.thread_id else str(post.id),
                "locked": post.locked_at is not None,
                "pinned": post.pinned_at is not None,
            },
        }
