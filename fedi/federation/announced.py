"""Announces from groups our users follow: store relayed posts, apply relayed edits and deletes.

An embedded object is trusted only when it comes from the announcing group's own host;
anything else is fetched from its origin (SECURITY 1), within the fetch budget (SECURITY 14).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from fedi.activitypub.parse import IncomingActivity, host_of
from fedi.activitypub.vocab import (
    POST_TYPES,
    PUBLIC,
    addressed,
    addressees,
    first_type,
    id_of,
    ids,
)
from fedi.content import sanitize_html
from fedi.errors import FetchError
from fedi.groups.threads import find_post, store_post, title_for
from fedi.handlers import HandlerContext, Ignored
from fedi.privacy.visibility import visibility_from_addressing
from fedi.store.models import Actor, Follow, now


async def handle_announce(ctx: HandlerContext, activity: IncomingActivity) -> None:
    announcer = (
        await ctx.session.execute(select(Actor).where(Actor.uri == activity.actor))
    ).scalar_one_or_none()
    if announcer is None or not await _followed_locally(ctx, announcer):
        raise Ignored("Announce from an actor no local user follows")
    inner: Any = activity.object if activity.object is not None else activity.object_id
    kind = first_type(inner) if isinstance(inner, dict) else None
    if kind == "Update":
        return await _apply_update(ctx, activity, inner)
    if kind == "Delete":
        return await _apply_delete(ctx, inner)
    if kind not in (None, "Create", *POST_TYPES):
        raise Ignored(f"Announce of {kind} is not shown here")
    if kind == "Create":
        inner = inner.get("object")
    obj = await _trusted(ctx, activity, inner)
    if obj is None or first_type(obj) not in POST_TYPES:
        raise Ignored("Announce of something that is not a post")
    if await find_post(ctx.session, obj["id"]) is not None:
        return
    author_uri = id_of(obj.get("attributedTo"))
    if author_uri is None or host_of(author_uri) != host_of(obj["id"]):
        raise Ignored("post whose author is not on its host")
    if not ctx.spend_fetch():
        raise Ignored("fetch budget spent")
    author = await ctx.resolver.actor(ctx.session, author_uri)
    parent_uri = id_of(obj.get("inReplyTo"))
    parent = await find_post(ctx.session, parent_uri) if parent_uri else None
    followers = announcer.followers_url or f"{announcer.uri}/followers"
    visibility = visibility_from_addressing(
        ids(obj.get("to")), ids(obj.get("cc")), group=announcer.uri, followers=followers
    )
    await store_post(
        ctx.session, ctx.urls, obj, author=author, group=announcer, parent=parent, local=False,
        own_context=False, visibility=visibility.value,
    )


async def _followed_locally(ctx: HandlerContext, announcer: Actor) -> bool:
    row = await ctx.session.execute(
        select(Follow.id)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(Follow.target_id == announcer.id, Follow.state == "accepted", Actor.local)
        .limit(1)
    )
    return row.first() is not None


async def _trusted(
    ctx: HandlerContext, activity: IncomingActivity, inner: Any
) -> dict[str, Any] | None:
    """The post itself, from the announcer's host if embedded there, else from its origin."""
    uri = id_of(inner)
    if uri is None:
        return None
    if isinstance(inner, dict) and host_of(uri) == host_of(activity.actor):
        return inner
    if isinstance(inner, dict) and _vouched_by_group(inner, activity.actor):
        # A non-public post addressed to the group: its origin will not show it to us (we
        # are not its audience), and the group verified its author's signature when the
        # post arrived. We take the group's word, and the post stays within that group.
        return inner
    if not ctx.spend_fetch():
        raise Ignored("fetch budget spent")
    try:
        return await ctx.resolver.fetch(uri)
    except FetchError as exc:
        raise Ignored(f"could not fetch the announced post: {exc.reason}") from None


def _vouched_by_group(obj: dict[str, Any], group: str) -> bool:
    readers = addressees(obj)
    return PUBLIC not in readers and (group in addressed(obj))


async def _apply_update(
    ctx: HandlerContext, activity: IncomingActivity, update: dict[str, Any]
) -> None:
    post = await find_post(ctx.session, id_of(update.get("object")) or "")
    if post is None:
        raise Ignored("update of a post we do not have")
    obj = await _trusted(ctx, activity, update.get("object"))
    if obj is None or obj.get("id") != post.uri:
        raise Ignored("update without the post")
    post.content = sanitize_html(obj.get("content") or "")
    if post.in_reply_to is None:
        post.name = title_for(obj)
    post.updated = now()
    post.document = json.dumps(obj)


async def _apply_delete(ctx: HandlerContext, delete: dict[str, Any]) -> None:
    uri = id_of(delete.get("object"))
    post = await find_post(ctx.session, uri) if uri else None
    if post is None or post.deleted_at is not None:
        raise Ignored("delete of a post we do not have")
    # Only the origin can say a post is gone: it must answer 404/410 or a Tombstone.
    if not ctx.spend_fetch():
        raise Ignored("fetch budget spent")
    try:
        still_there = await ctx.resolver.fetch(post.uri)
    except FetchError as exc:
        if not exc.gone:
            raise  # unreachable is not gone: retried later
        still_there = None
    if still_there is not None and first_type(still_there) != "Tombstone":
        raise Ignored("the origin still serves the post")
    post.deleted_at = now()
    post.content = ""
