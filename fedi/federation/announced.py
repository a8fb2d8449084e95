"""Announces from groups our users follow: store relayed posts, apply relayed edits and deletes.

An Announce is signed by the group, not by the author of what it wraps, so a wrapped activity
is judged by the same rules as one sent directly (SECURITY 19):

- a post of ours is changed only here, never by a remote Announce;
- a group relays changes only of posts in that group;
- an edit takes its new text from the post's own origin (or from the announcer's host when the
  post lives there), never from the relay's word;
- a deletion stands only when the origin says the post is gone;
- an embedded post from another host than the announcer's is taken only after fetching it from
  its own id, within the fetch budget (SECURITY 14).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from fedi.activitypub import integrity
from fedi.activitypub.parse import IncomingActivity, host_of
from fedi.activitypub.vocab import POST_TYPES, first_type, id_of, ids
from fedi.content import sanitize_html
from fedi.errors import FetchError, SignatureError
from fedi.federation.remote_moderation import GROUP_STATE_KINDS, apply_group_state
from fedi.groups import notices
from fedi.groups.threads import find_post, store_post, title_for
from fedi.handlers import HandlerContext, Ignored
from fedi.privacy.visibility import Visibility, visibility_from_addressing
from fedi.store.models import Actor, Follow, Post, now


async def handle_announce(ctx: HandlerContext, activity: IncomingActivity) -> None:
    announcer = (
        await ctx.session.execute(select(Actor).where(Actor.uri == activity.actor))
    ).scalar_one_or_none()
    if announcer is None or not await _followed_locally(ctx, announcer):
        raise Ignored("Announce from an actor no local user follows")
    inner: Any = activity.object if activity.object is not None else activity.object_id
    kind = first_type(inner) if isinstance(inner, dict) else None
    if kind == "Update":
        return await _apply_update(ctx, activity, announcer, inner)
    if kind == "Delete":
        return await _apply_delete(ctx, announcer, inner)
    if kind in GROUP_STATE_KINDS:
        return await apply_group_state(ctx, announcer, inner)
    if kind not in (None, "Create", *POST_TYPES):
        raise Ignored(f"Announce of {kind} is not shown here")
    wrapper = inner if kind == "Create" else None
    if wrapper is not None:
        inner = wrapper.get("object")
    uri = id_of(inner)
    if uri is not None and ctx.urls.is_local(uri):
        raise Ignored("a post of this server is known here, not taken from a relay")
    if uri is not None and await find_post(ctx.session, uri) is not None:
        return
    obj = await _trusted(ctx, activity, inner, wrapper)
    if obj is None or first_type(obj) not in POST_TYPES:
        raise Ignored("Announce of something that is not a post")
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
    # The group may have narrowed the post (a private group takes members-only at most):
    # it is never shown here more widely than the group relayed it.
    relayed_as = visibility_from_addressing(
        ids(activity.document.get("to")), ids(activity.document.get("cc")),
        group=announcer.uri, followers=followers,
    )
    if visibility.open_to_anyone and not relayed_as.open_to_anyone:
        visibility = Visibility.MEMBERS
    post = await store_post(
        ctx.session, ctx.urls, obj, author=author, group=announcer, parent=parent, local=False,
        own_context=False, visibility=visibility.value,
    )
    await notices.post_stored(ctx.session, post)


async def _followed_locally(ctx: HandlerContext, announcer: Actor) -> bool:
    row = await ctx.session.execute(
        select(Follow.id)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(Follow.target_id == announcer.id, Follow.state == "accepted", Actor.local)
        .limit(1)
    )
    return row.first() is not None


async def _trusted(
    ctx: HandlerContext, activity: IncomingActivity, inner: Any,
    wrapper: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The post itself: as embedded when it lives on the announcer's own host (whose signature
    covers it) or when its author's integrity proof on the wrapping activity covers it, else
    as its origin serves it. The relay's copy of someone else's post is never taken on the
    relay's word."""
    uri = id_of(inner)
    if uri is None:
        return None
    if ctx.urls.is_local(uri):
        raise Ignored("a post of this server is changed only here")
    if isinstance(inner, dict) and host_of(uri) == host_of(activity.actor):
        return inner
    if (isinstance(inner, dict) and wrapper is not None
            and ids(inner.get("attributedTo")) == [id_of(wrapper.get("actor"))]
            and host_of(uri) == host_of(id_of(wrapper.get("actor")) or "")
            and await _proven_by_actor(ctx, wrapper)):
        return inner
    if not ctx.spend_fetch():
        raise Ignored("fetch budget spent")
    try:
        fetched = await ctx.resolver.fetch(uri)
    except FetchError as exc:
        raise Ignored(f"could not fetch the announced post from its origin: {exc.reason}") from None
    if id_of(fetched) != uri:
        raise Ignored("the origin answered with another object")
    return fetched


async def _proven_by_actor(ctx: HandlerContext, wrapped: dict[str, Any]) -> bool:
    """Whether the wrapped activity carries a valid integrity proof (FEP-8b32) by its own
    actor's published assertion key; False when it has none, Ignored when it is forged."""
    key_id = integrity.proof_key_id(wrapped)
    actor_uri = id_of(wrapped.get("actor"))
    if key_id is None or actor_uri is None or host_of(key_id) != host_of(actor_uri):
        return False
    if ctx.urls.is_local(actor_uri) or not ctx.spend_fetch():
        return False
    actor = await ctx.resolver.actor(ctx.session, actor_uri)
    if actor.assertion_key_id != key_id and ctx.spend_fetch():  # the key may have rotated
        actor = await ctx.resolver.actor(ctx.session, actor_uri, refresh=True)
    if actor.assertion_key_id != key_id or not actor.assertion_public_key:
        raise Ignored(f"the proof's key {key_id} is not {actor_uri}'s assertion key")
    try:
        integrity.verify(wrapped, actor.assertion_public_key)
    except SignatureError as exc:
        raise Ignored(f"integrity proof refused: {exc.reason}") from None
    return True


async def _relayed_post(
    ctx: HandlerContext, announcer: Actor, change: dict[str, Any], what: str
) -> Post:
    """The remote post a relayed Update or Delete names, if this group may relay changes to it."""
    uri = id_of(change.get("object"))
    if uri is None:
        raise Ignored(f"{what} without an object")
    if ctx.urls.is_local(uri):
        raise Ignored(f"a post of this server is changed only here, not by a relayed {what}")
    post = await find_post(ctx.session, uri)
    if post is None or post.uri != uri or post.local:
        raise Ignored(f"{what} of a post we do not have")
    if post.group_id != announcer.id:
        raise Ignored(f"{what} relayed by a group the post is not in")
    return post


async def _apply_update(
    ctx: HandlerContext, activity: IncomingActivity, announcer: Actor, update: dict[str, Any]
) -> None:
    post = await _relayed_post(ctx, announcer, update, "Update")
    author = await ctx.session.get(Actor, post.author_id)
    if author is None or id_of(update.get("actor")) != author.uri:
        raise Ignored("only the author edits a post")
    obj = await _trusted(ctx, activity, update.get("object"), update)
    if obj is None or obj.get("id") != post.uri:
        raise Ignored("update without the post")
    if ids(obj.get("attributedTo")) != [author.uri]:
        raise Ignored("the updated post names another author")
    post.content = sanitize_html(obj.get("content") or "")
    if post.in_reply_to is None:
        post.name = title_for(obj)
    post.updated = now()
    post.document = json.dumps(obj)


async def _apply_delete(ctx: HandlerContext, announcer: Actor, delete: dict[str, Any]) -> None:
    post = await _relayed_post(ctx, announcer, delete, "Delete")
    if post.deleted_at is not None:
        raise Ignored("delete of a post already deleted")
    author = await ctx.session.get(Actor, post.author_id)
    if (author is not None and id_of(delete.get("actor")) == author.uri
            and await _proven_by_actor(ctx, delete)):
        post.deleted_at = now()  # the author's own signed word
        post.content = ""
        return
    # Only the origin can say a post is gone: a 410 or a Tombstone, or a 404 for a post anyone
    # may see (a 404 for a non-public post is what anyone outside its audience is told).
    if not ctx.spend_fetch():
        raise Ignored("fetch budget spent")
    try:
        still_there = await ctx.resolver.fetch(post.uri)
    except FetchError as exc:
        public = Visibility(post.visibility).open_to_anyone
        if exc.status == 410 or (exc.status == 404 and public):
            still_there = None
        elif exc.status == 404:
            raise Ignored("the origin does not show the post to us; it may not be gone") from None
        else:
            raise  # unreachable is not gone: retried later
    if still_there is not None and first_type(still_there) != "Tombstone":
        raise Ignored("the origin still serves the post")
    post.deleted_at = now()
    post.content = ""
