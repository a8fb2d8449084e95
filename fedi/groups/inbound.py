"""Activities from members' servers into local groups: posts, edits, deletions, reactions.

Each is checked (is the author a member? banned? is this their post?) before anything is
stored or relayed; refusals answer the author's server with a Reject.
"""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.parse import IncomingActivity, host_of, is_http_url, scrub_links
from fedi.activitypub.vocab import POST_TYPES, addressed, first_type, id_of, ids, is_public
from fedi.content import html_to_text, sanitize_html
from fedi.delivery.enqueue import enqueue
from fedi.errors import FetchError
from fedi.groups import notices
from fedi.groups.admission import Held, Refused, judge
from fedi.groups.likes import add_likes
from fedi.groups.relay import relay_activity, relay_post, withdraw_boost
from fedi.groups.roles import Standing, standing
from fedi.groups.threads import find_post, remote_document, store_post, title_for
from fedi.groups.viewers import facts_for, viewer_within
from fedi.handlers import HandlerContext, Ignored
from fedi.privacy.access import can_view
from fedi.privacy.visibility import (
    GroupPrivacy,
    Visibility,
    clamp_to_parent,
    visibility_from_addressing,
)
from fedi.store.memo import memo_of, remembered
from fedi.store.models import Actor, Follow, Group, Post, PostAudience, Reaction, now
from fedi.urls import (
    Urls,
    new_id,
)

VOTES = ("Like", "Dislike")

# A member who mentions the group with only one of these words changes what they receive.
WANT_ALL = frozenset({"!all", "!everything"})
WANT_THREADS = frozenset({"!threads", "!new"})


async def _local_group(ctx: HandlerContext, uri: str) -> Actor | None:
    if not ctx.urls.is_local(uri):
        return None

    async def load() -> Actor | None:
        return (
            await ctx.session.execute(
                select(Actor).where(Actor.uri == uri, Actor.local, Actor.type == "Group")
            )
        ).scalar_one_or_none()

    # An Actor held for the batch by the processor, or None until an actor is written.
    return await remembered(ctx.session, ("local_group", uri), _ACTORS, load)


_ACTORS = frozenset({"actors"})


async def _object(ctx: HandlerContext, activity: IncomingActivity) -> dict[str, Any]:
    """The activity's object, trusted only from its author's own host (SECURITY 1)."""
    obj = activity.object
    if obj is None:
        if activity.object_id is None:
            raise Ignored("activity without an object")
        if not is_http_url(activity.object_id):
            raise Ignored("object id is not an http(s) URL")
        if host_of(activity.object_id) != host_of(activity.actor):
            raise Ignored("object on another host than its actor")
        if not ctx.spend_fetch():
            raise Ignored("fetch budget spent")
        try:
            obj = await ctx.resolver.fetch(activity.object_id)
        except FetchError as exc:
            raise Ignored(f"could not fetch the object: {exc.reason}") from None
    # http(s) first: `javascript://<actor host>/x` has the actor's "host" (SECURITY 20).
    if not is_http_url(obj.get("id")):
        raise Ignored("object id is not an http(s) URL")
    if host_of(obj["id"]) != host_of(activity.actor):
        raise Ignored("object id is not on the actor's host")
    # Every attributedTo entry must be the actor (a list must not smuggle in someone else).
    authors = ids(obj.get("attributedTo"))
    if not authors or any(author != activity.actor for author in authors):
        raise Ignored("object is attributed to someone other than the actor who sent it")
    scrubbed: dict[str, Any] = scrub_links(obj)
    return scrubbed


async def _target_group(
    ctx: HandlerContext, obj: dict[str, Any]
) -> tuple[Actor | None, Post | None]:
    """A reply belongs to its thread's group; otherwise the group it addresses or mentions."""
    parent_uri = id_of(obj.get("inReplyTo"))
    if parent_uri is not None:
        parent = await find_post(ctx.session, parent_uri)
        if parent is not None and parent.group_id is not None:
            group = await ctx.session.get(Actor, parent.group_id)
            if group is not None and group.local:
                return group, parent
    candidates = addressed(obj) + [
        href for tag in _tags(obj) if tag.get("type") == "Mention" and (href := id_of(tag))
    ]
    for uri in dict.fromkeys(candidates):
        group = await _local_group(ctx, uri)
        if group is not None:
            return group, None
    return None, None


def _tags(obj: dict[str, Any]) -> list[dict[str, Any]]:
    tags = obj.get("tag")
    items = tags if isinstance(tags, list) else [tags]
    return [t for t in items if isinstance(t, dict)]


async def _refuse(
    ctx: HandlerContext, group: Actor, author: Actor, activity: IncomingActivity, reason: str
) -> None:
    if author.inbox:
        reject = activities.respond(
            "Reject", ctx.urls.activity(new_id()), group.uri, activity.document, author.uri
        )
        await enqueue(ctx.session, group, reject, [author.inbox])
    ctx.outcome = f"refused: {reason}"


async def handle_create(ctx: HandlerContext, activity: IncomingActivity) -> None:
    obj = await _object(ctx, activity)
    if first_type(obj) not in POST_TYPES:
        raise Ignored(f"Create of a {first_type(obj)} is not a post")
    if await find_post(ctx.session, obj["id"]) is not None:
        raise Ignored("post already known")
    group, parent = await _target_group(ctx, obj)
    if group is None:
        raise Ignored("not addressed to a local group")
    author = await ctx.resolver.actor(ctx.session, activity.actor)
    config = await ctx.session.get(Group, group.id)
    if config is None:
        raise Ignored("group without settings")
    decision = await judge(ctx.session, group, config, author, parent)
    if isinstance(decision, Refused):
        return await _refuse(ctx, group, author, activity, decision.reason)
    if await _member_command(ctx, group, author, obj):
        return
    followers = Urls.followers(group.uri)
    visibility = visibility_from_addressing(
        ids(obj.get("to")), ids(obj.get("cc")), group=group.uri, followers=followers
    )
    if GroupPrivacy(config.privacy) is not GroupPrivacy.PUBLIC and visibility.open_to_anyone:
        visibility = Visibility.MEMBERS  # a private group's posts stay among its members
    named = [u for u in ids(obj.get("to")) + ids(obj.get("cc"))
             if not is_public(u) and u not in (group.uri, followers, author.uri)
             and not u.rstrip("/").endswith("/followers")]
    held = decision.reason if isinstance(decision, Held) else None
    if parent is not None:
        facts = await facts_for(ctx.session, parent)
        narrowed = clamp_to_parent(visibility, Visibility(parent.visibility))
        if narrowed is not visibility or Visibility(parent.visibility).has_named_audience:
            visibility = narrowed
            named = sorted(facts.audience | {facts.author}) if narrowed.has_named_audience else []
    post = await store_post(
        ctx.session, ctx.urls, obj, author=author, group=group, parent=parent, local=False,
        visibility=visibility.value, reply_policy=config.reply_policy, held=held,
        activity=json.dumps(activity.document),
    )
    if visibility.has_named_audience:
        await _store_audience(ctx, post, named)
    await notices.post_stored(ctx.session, post)
    if held is not None:
        ctx.outcome = f"held for a moderator ({held})"
        return
    await relay_post(ctx.session, ctx.urls, group, post, activity.document, author_uri=author.uri)


async def _store_audience(ctx: HandlerContext, post: Post, uris: list[str]) -> None:
    """The named people of a mentioned post; unknown ones are fetched within the budget."""
    for uri in dict.fromkeys(uris):
        actor = (
            await ctx.session.execute(select(Actor).where(Actor.uri == uri))
        ).scalar_one_or_none()
        if actor is None and ctx.spend_fetch():
            try:
                actor = await ctx.resolver.actor(ctx.session, uri)
            except FetchError:
                actor = None
        if actor is not None:
            ctx.session.add(PostAudience(post_id=post.id, actor_id=actor.id))
    await ctx.session.flush()


async def _member_command(
    ctx: HandlerContext, group: Actor, author: Actor, obj: dict[str, Any]
) -> bool:
    """"@group !all" asks for every reply; "@group !threads" for new threads only."""
    words = [w for w in html_to_text(obj.get("content") or "").split() if not w.startswith("@")]
    if len(words) != 1 or words[0].lower() not in WANT_ALL | WANT_THREADS:
        return False
    await ctx.session.execute(
        update(Follow)
        .where(Follow.follower_id == author.id, Follow.target_id == group.id)
        .values(wants_all_replies=words[0].lower() in WANT_ALL)
    )
    ctx.outcome = f"member setting {words[0].lower()}"
    return True


async def _own_post(ctx: HandlerContext, activity: IncomingActivity, uri: str | None) -> Post:
    post = await find_post(ctx.session, uri) if uri else None
    if post is None or post.group_id is None:
        raise Ignored("not a post in a local group")
    author = await ctx.session.get(Actor, post.author_id)
    if author is None or author.uri != activity.actor:
        raise Ignored("only the author may change a post")
    return post


async def handle_update(ctx: HandlerContext, activity: IncomingActivity) -> None:
    if activity.object_id == activity.actor:
        await ctx.resolver.actor(ctx.session, activity.actor, refresh=True)
        return
    obj = await _object(ctx, activity)
    post = await _own_post(ctx, activity, obj.get("id"))
    if post.deleted_at is not None:
        raise Ignored("update of a deleted post")
    post.content = sanitize_html(obj.get("content") or "")
    post.summary = obj.get("summary") if isinstance(obj.get("summary"), str) else None
    if post.in_reply_to is None:
        post.name = title_for(obj)
    post.updated = now()
    post.document = json.dumps(remote_document(obj))
    group = await ctx.session.get(Actor, post.group_id)
    if group is not None:
        await relay_activity(ctx.session, ctx.urls, group, activity.document,
                             author_uri=activity.actor, post=post)


async def handle_delete(ctx: HandlerContext, activity: IncomingActivity) -> None:
    if activity.object_id == activity.actor:
        # The account is gone: it leaves every group it was in.
        actor = (
            await ctx.session.execute(select(Actor).where(Actor.uri == activity.actor))
        ).scalar_one_or_none()
        if actor is None:
            raise Ignored("delete of an actor we do not know")
        await ctx.session.execute(delete(Follow).where(Follow.follower_id == actor.id))
        return
    post = await _own_post(ctx, activity, activity.object_id)
    if post.deleted_at is not None:
        raise Ignored("already deleted")
    post.deleted_at = now()
    post.content = ""
    group = await ctx.session.get(Actor, post.group_id)
    if group is not None:
        await relay_activity(ctx.session, ctx.urls, group, activity.document,
                             author_uri=activity.actor, post=post)
        await withdraw_boost(ctx.session, ctx.urls, group, post, author_uri=activity.actor)


async def handle_reaction(ctx: HandlerContext, activity: IncomingActivity) -> None:
    """Like, Dislike (Lemmy) and EmojiReact (Misskey, Pleroma) of a post in a local group."""
    post = await find_post(ctx.session, activity.object_id) if activity.object_id else None
    if post is None or post.group_id is None or post.deleted_at is not None:
        raise Ignored("reaction to something that is not a post in a local group")
    group = await ctx.session.get(Actor, post.group_id)
    if group is None or not group.local:
        raise Ignored("reaction to a post of another server's group")
    actor = await ctx.resolver.actor(ctx.session, activity.actor)
    if (await standing(ctx.session, group, actor)) is Standing.BANNED:
        raise Ignored("banned from the group")
    facts = await facts_for(ctx.session, post)
    if not can_view(facts, await viewer_within(ctx.session, facts, group, actor.uri)):
        raise Ignored("reaction to a post the actor may not see")
    raw = activity.document.get("content")
    content = raw[:255] if isinstance(raw, str) else None
    # One vote per person: a new Like or Dislike replaces the last (Lemmy sends no Undo);
    # emoji reactions count once per person and emoji.
    # This very activity (counted already) and the vote it replaces, in one query.
    await _pending_written(ctx.session, activity.id, post.id, actor.id)
    if activity.type in VOTES:
        found = await _earlier_votes(ctx.session, activity.id, post.id, actor)
    else:
        found = list((await ctx.session.execute(_SAME_EMOJI, {
            "uri": activity.id, "post_id": post.id, "actor_id": actor.id,
            "type": activity.type, "content": content,
        })).scalars())
    if any(old.activity_uri == activity.id for old in found):
        raise Ignored("reaction already counted")
    for old in found:
        if old.type == "Like":
            await add_likes(ctx.session, post, -1)
        await ctx.session.delete(old)
    if found:
        await ctx.session.flush()
    await _store_reaction(ctx.session, {
        "post_id": post.id, "actor_id": actor.id, "type": activity.type, "content": content,
        "activity_uri": activity.id, "created_at": now(),
    })
    if activity.type == "Like":
        await add_likes(ctx.session, post, 1)
        await notices.liked(ctx.session, post, actor)
    await relay_activity(ctx.session, ctx.urls, group, activity.document,
                         author_uri=activity.actor, post=post)


def _earlier_reactions(same: ColumnElement[bool], *, batch: bool = False) -> Select[Reaction]:
    """The reaction `uri` itself and the reactions of `actor_id` to `post_id` that are the
    `same` as it; with `batch`, for the activities `uris` and the actors `actors` at once."""
    this: ColumnElement[bool]
    by: ColumnElement[bool]
    if batch:
        this = Reaction.activity_uri.in_(bindparam("uris", expanding=True))
        by = Reaction.actor_id.in_(
            select(Actor.id).where(Actor.uri.in_(bindparam("actors", expanding=True))))
    else:
        this = Reaction.activity_uri == bindparam("uri")
        by = Reaction.actor_id == bindparam("actor_id")
    return select(Reaction).where(this | ((Reaction.post_id == bindparam("post_id")) & by & same))


# Statements of every processed reaction, built once (bench.processing).
_VOTE = Reaction.type.in_(VOTES)
_SAME_VOTE = _earlier_reactions(_VOTE)
# In a batch: the votes of all of its actors on one post, and its own activities if counted
# already, in one query (the Likes of a batch gather on a few threads).
_BATCH_VOTES = _earlier_reactions(_VOTE, batch=True)
_SAME_EMOJI = _earlier_reactions(
    (Reaction.type == bindparam("type"))
    & Reaction.content.is_not_distinct_from(bindparam("content", type_=String)))  # or NULL
_STORE_REACTION = insert(cast(Table, Reaction.__table__))
_PENDING = "fedi.groups.reactions"
_REACTIONS = frozenset({"reactions"})


async def _earlier_votes(session: AsyncSession, uri: str, post_id: int,
                         actor: Actor) -> list[Reaction]:
    """This very vote if counted already, and the person's vote on the post it replaces:
    `_SAME_VOTE`, asked once per post for a whole inbox batch (bench.processing) when the
    vote and its actor are the batch's. A write to reactions drops the batch's answer, and
    the batch's own waiting votes are written before it is read (`_pending_written`)."""
    memo = memo_of(session)
    if memo is None or uri not in memo.activities or actor.uri not in memo.actors:
        return list((await session.execute(
            _SAME_VOTE, {"uri": uri, "post_id": post_id, "actor_id": actor.id})).scalars())

    async def load() -> list[Reaction]:
        return list((await session.execute(_BATCH_VOTES, {
            "uris": sorted(memo.activities), "post_id": post_id,
            "actors": sorted(memo.actors)})).scalars())

    votes = await remembered(session, ("votes", post_id), _REACTIONS, load)
    # The batch's answer narrowed to this vote: what _SAME_VOTE would have found.
    return [r for r in votes if r.activity_uri == uri
            or (r.post_id == post_id and r.actor_id == actor.id and r.type in VOTES)]


async def _store_reaction(session: AsyncSession, row: dict[str, Any]) -> None:
    """A Core INSERT built once (an ORM object and its flush were a quarter of a Like's CPU);
    in an inbox batch that defers writes, one INSERT for the batch's reactions at its end,
    not a round trip each (bench.processing)."""
    memo = memo_of(session)
    if memo is None or not memo.defers_writes:
        await session.execute(_STORE_REACTION, row)
        return
    state = memo.deferred(_PENDING, _store_reactions)
    state.setdefault("rows", {})[row["activity_uri"]] = row
    state.setdefault("people", set()).add((row["post_id"], row["actor_id"]))


async def _store_reactions(session: AsyncSession, state: dict[str, Any]) -> None:
    await session.execute(_STORE_REACTION, list(state["rows"].values()))


async def _pending_written(session: AsyncSession, uri: str | None, post_id: int | None = None,
                           actor_id: int | None = None) -> None:
    """Before a query for the reaction `uri`, or for this person's reactions to this post:
    the batch's waiting reactions are written if the query could find one of them. The
    queries stay the one place that says which reactions count as the same."""
    memo = memo_of(session)
    state = memo.pending(_PENDING) if memo is not None else None
    if state is None:
        return
    if uri in state.get("rows", {}) or (post_id, actor_id) in state.get("people", set()):
        assert memo is not None
        await memo.write_now(session, _PENDING)


async def undo_reaction(ctx: HandlerContext, activity: IncomingActivity) -> None:
    uri = activity.object_id
    await _pending_written(ctx.session, uri)
    reaction = (
        await ctx.session.execute(select(Reaction).where(Reaction.activity_uri == uri))
    ).scalar_one_or_none()
    if reaction is None:
        raise Ignored("undo of a reaction we did not count")
    actor = await ctx.session.get(Actor, reaction.actor_id)
    if actor is None or actor.uri != activity.actor:
        raise Ignored("only the reacting actor may undo a reaction")
    post = await ctx.session.get(Post, reaction.post_id)
    await ctx.session.delete(reaction)
    if post is not None and reaction.type == "Like":
        await add_likes(ctx.session, post, -1)
    if post is not None and post.group_id is not None:
        group = await ctx.session.get(Actor, post.group_id)
        if group is not None:
            await relay_activity(ctx.session, ctx.urls, group, activity.document,
                                 author_uri=activity.actor, post=post)
