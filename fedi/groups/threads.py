"""Posts and threads in groups: titles, thread membership, storing what members post."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import is_http_url, scrub_links
from fedi.activitypub.vocab import first_type, id_of
from fedi.content import html_to_text, sanitize_html
from fedi.groups.viewers import names_nobody_yet
from fedi.handlers import Ignored
from fedi.live.source import post_stored
from fedi.store.memo import remembered
from fedi.store.models import Actor, Post
from fedi.store.reserved_ids import next_id
from fedi.urls import Urls

TITLE_LENGTH = 120


def title_for(obj: dict[str, Any]) -> str | None:
    """A thread title: a Page's or Article's name (Lemmy), else the summary or first line."""
    for field in ("name", "summary"):
        given = obj.get(field)
        text = html_to_text(given) if isinstance(given, str) else ""
        if text:
            return text[:TITLE_LENGTH]
    content = obj.get("content")
    if isinstance(content, str):
        for line in html_to_text(content).splitlines():
            # Drop leading mentions of the group ("@cats@host Hello") from the title.
            words = [w for w in line.split() if not w.startswith("@")]
            if words:
                return " ".join(words)[:TITLE_LENGTH]
    return None


# Built once: building a statement per call (operators, coercions) cost more than running it
# (bench.processing, every Like and Create looks a post up).
_FIND_POST = select(Post).where(
    (Post.uri == bindparam("uri")) | (Post.copy_uri == bindparam("uri")))


async def find_post(session: AsyncSession, uri: str) -> Post | None:
    """A post by its id, or by the id of the group's copy of it (what microblogs reply to).
    In the inbox processor's batch, read once until a write to posts (the Likes of one
    thread arrive together)."""

    async def load() -> Post | None:
        found = (await session.execute(_FIND_POST, {"uri": uri})).scalars().all()
        return next((post for post in found if post.uri == uri), found[0] if found else None)

    return await remembered(session, ("find_post", uri), _POSTS, load)


_POSTS = frozenset({"posts"})


def context_uri(urls: Urls, thread_id: int) -> str:
    return f"{urls.base}/contexts/{thread_id}"


def remote_document(obj: dict[str, Any]) -> dict[str, Any]:
    """A remote post as we keep and serve it again: links http(s) only, HTML sanitised
    (SECURITY 18, 20): the stored document is what featured and copies hand out."""
    clean: dict[str, Any] = scrub_links(obj)
    if isinstance(clean.get("content"), str):
        clean["content"] = sanitize_html(clean["content"])
    if isinstance(clean.get("contentMap"), dict):
        clean["contentMap"] = {
            k: sanitize_html(v) for k, v in clean["contentMap"].items() if isinstance(v, str)
        }
    return clean


async def store_post(
    session: AsyncSession,
    urls: Urls,
    obj: dict[str, Any],
    *,
    author: Actor,
    group: Actor,
    parent: Post | None,
    local: bool,
    visibility: str = "public",
    own_context: bool = True,
    reply_policy: str | None = None,
    held: str | None = None,
    activity: str | None = None,
) -> Post:
    """Persist a post in a group's thread; a reply joins its parent's thread. What the caller
    already knows goes into the INSERT (an UPDATE after it is one more statement per post)."""
    if not local:
        # Every path that stores a remote post comes through here: only http(s) ids and
        # links are kept (SECURITY 20), whatever the caller checked before.
        if not is_http_url(obj.get("id")):
            raise Ignored("the post's id is not an http(s) URL")
        obj = remote_document(obj)
    post = Post(
        uri=obj["id"],
        type=first_type(obj) or "Note",
        author_id=author.id,
        group_id=group.id,
        in_reply_to=parent.uri if parent else id_of(obj.get("inReplyTo")),
        name=None if parent else title_for(obj),
        summary=obj.get("summary") if isinstance(obj.get("summary"), str) else None,
        content=sanitize_html(obj.get("content") or "") if not local else obj["content"],
        visibility=visibility,
        local=local,
        document=json.dumps(obj),
        held=held,
        activity=activity,
    )
    if reply_policy is not None:
        post.reply_policy = reply_policy
    # The group's server owns its threads' context (FEP-7888); a server that only follows
    # the group keeps the context the post came with.
    context = None if own_context else id_of(obj.get("context"))
    if parent is not None:
        post.thread_id = parent.thread_id or parent.id
        post.context = context_uri(urls, post.thread_id) if own_context else context
    # Its id taken ahead where the database allows (fedi.store.reserved_ids): the thread,
    # context and boost set below and by the relay then go into the one INSERT.
    reserved = await next_id(session, "posts")
    session.add(post)
    if reserved is None:
        await session.flush()
    else:
        post.id = reserved
    names_nobody_yet(session, post.id)
    if parent is not None:
        await session.execute(
            update(Post).where(Post.id == parent.id).values(reply_count=Post.reply_count + 1)
        )
    else:
        post.thread_id = post.id  # a thread starter is its own thread: known once it has an id
        post.context = context_uri(urls, post.id) if own_context else context
    post_stored(session, post)  # live updates, at commit, if the post is not held by then
    return post


async def thread_participants(session: AsyncSession, thread_id: int) -> set[int]:
    rows = await session.execute(
        select(Post.author_id).where(Post.thread_id == thread_id, Post.deleted_at.is_(None))
    )
    return set(rows.scalars())
