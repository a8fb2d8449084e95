"""Announces from groups our users follow: store the relayed post.

An embedded object is trusted only when it comes from the announcing group's own host;
anything else is fetched from its origin (SECURITY 1), within the fetch budget (SECURITY 14).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from fedi.activitypub.parse import IncomingActivity, host_of
from fedi.activitypub.vocab import POST_TYPES, first_type, id_of
from fedi.content import sanitize_html
from fedi.errors import FetchError
from fedi.handlers import HandlerContext, Ignored
from fedi.store.models import Actor, Follow, Post


async def handle_announce(ctx: HandlerContext, activity: IncomingActivity) -> None:
    announcer = (
        await ctx.session.execute(select(Actor).where(Actor.uri == activity.actor))
    ).scalar_one_or_none()
    if announcer is None or not await _followed_locally(ctx, announcer):
        raise Ignored("Announce from an actor no local user follows")
    obj = await _announced_object(ctx, activity)
    if obj is None:
        raise Ignored("Announce of something that is not a post")
    uri = obj["id"]
    if (await ctx.session.execute(select(Post.id).where(Post.uri == uri))).first():
        return
    author_uri = id_of(obj.get("attributedTo"))
    if author_uri is None or host_of(author_uri) != host_of(uri):
        raise Ignored("post whose author is not on its host")
    if not ctx.spend_fetch():
        raise Ignored("fetch budget spent")
    author = await ctx.resolver.actor(ctx.session, author_uri)
    ctx.session.add(
        Post(
            uri=uri,
            type=first_type(obj) or "Note",
            author_id=author.id,
            group_id=announcer.id if announcer.type == "Group" else None,
            in_reply_to=id_of(obj.get("inReplyTo")),
            context=id_of(obj.get("context")),
            name=obj.get("name") if isinstance(obj.get("name"), str) else None,
            summary=obj.get("summary") if isinstance(obj.get("summary"), str) else None,
            content=sanitize_html(obj.get("content") or ""),
            local=False,
            document=json.dumps(obj),
        )
    )


async def _followed_locally(ctx: HandlerContext, announcer: Actor) -> bool:
    row = await ctx.session.execute(
        select(Follow.id)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(Follow.target_id == announcer.id, Follow.state == "accepted", Actor.local)
        .limit(1)
    )
    return row.first() is not None


async def _announced_object(
    ctx: HandlerContext, activity: IncomingActivity
) -> dict[str, Any] | None:
    """The post inside Announce(Create(post)) or Announce(post), from a trusted source."""
    inner: Any = activity.object if activity.object is not None else activity.object_id
    if isinstance(inner, dict) and first_type(inner) == "Create":
        inner = inner.get("object")
    uri = id_of(inner)
    if uri is None:
        return None
    if isinstance(inner, dict) and host_of(uri) == host_of(activity.actor):
        obj: dict[str, Any] = inner
    else:
        if not ctx.spend_fetch():
            raise Ignored("fetch budget spent")
        try:
            obj = await ctx.resolver.fetch(uri)
        except FetchError as exc:
            raise Ignored(f"could not fetch the announced post: {exc.reason}") from None
    return obj if first_type(obj) in POST_TYPES else None
