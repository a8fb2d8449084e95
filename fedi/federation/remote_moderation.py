"""Moderators on other servers moderate a local group with the activities their server sends
(FEP-1b12, Lemmy's shapes):

- `Delete` of a post by someone other than its author, or `Remove` of it with the group as
  `target`: the post is removed;
- `Block` of a person with the group as `target`, and its `Undo`: a ban, and its lifting;
- `Lock` of a thread, and its `Undo`;
- `Add`/`Remove` with the group's `featured` collection as `target`: a pin, an unpin;
- `Add`/`Remove` with the group's `moderators` collection as `target`: from the owner only.

The signer (the inbox verified that it is the activity's actor) must hold the role in that
group. Then the same use case a local moderator calls runs, its result is announced as for
a local moderator, and the audit log records it under the remote actor's id. From anyone
else the activity changes nothing and is logged as a refusal.

Where the group is another server's and the object a person of ours, an `Add`/`Remove` of
its moderators collection sent by that group is how we learn that our person moderates it
(the web then offers them the actions of groups/remote_mod.py).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from fedi.activitypub.parse import IncomingActivity, host_of
from fedi.activitypub.vocab import first_type, id_of, ids
from fedi.errors import ValidationError
from fedi.federation.following import handle_banned_from_remote_group
from fedi.groups import moderation, modlog
from fedi.groups.inbound import handle_delete as delete_own_post
from fedi.groups.membership import handle_undo as undo_follow_or_reaction
from fedi.groups.modlog import Moderator
from fedi.groups.remote_mod import learn_remote_role
from fedi.groups.roles import Standing, standing
from fedi.groups.threads import find_post
from fedi.handlers import HandlerContext, Ignored
from fedi.store.models import Actor, Post, now
from fedi.urls import Urls

log = logging.getLogger(__name__)


async def _local_group(ctx: HandlerContext, uri: str | None) -> Actor | None:
    if uri is None or not ctx.urls.is_local(uri):
        return None
    return (
        await ctx.session.execute(
            select(Actor).where(Actor.uri == uri, Actor.local, Actor.type == "Group")
        )
    ).scalar_one_or_none()


async def _post_in_local_group(ctx: HandlerContext, uri: str | None) -> tuple[Post, Actor]:
    post = await find_post(ctx.session, uri) if uri else None
    if post is None or post.group_id is None:
        raise Ignored("not a post in a local group")
    group = await ctx.session.get(Actor, post.group_id)
    if group is None or not group.local:
        raise Ignored("not a post in a local group")
    return post, group


def _named_groups(document: dict[str, Any]) -> set[str]:
    """The groups an activity says it is about (`target`, `audience`): if it names any,
    the post's own group must be one of them."""
    return {uri for key in ("target", "audience") for uri in ids(document.get(key))}


async def _moderator(
    ctx: HandlerContext, group: Actor, activity: IncomingActivity, what: str, *,
    owner_only: bool = False,
) -> Actor:
    """The signer, if they may do `what` in `group`; otherwise a logged refusal (Ignored:
    the transaction is rolled back, nothing is changed)."""
    actor = await ctx.resolver.actor(ctx.session, activity.actor)
    found = await standing(ctx.session, group, actor)
    allowed = found is Standing.OWNER if owner_only else found.moderates
    if not allowed:
        role = "the owner" if owner_only else "a moderator"
        log.warning("refused %s in group %s from %s: not %s of it (activity %s)",
                    what, group.uri, actor.uri, role, activity.id)
        if what == "remove":  # a Delete of someone else's post: say both ways it could stand
            raise Ignored(f"refused: only the author or a moderator of {group.uri} may remove a "
                          f"post there, and {actor.uri} is neither")
        raise Ignored(f"refused: {actor.uri} is not {role} of {group.uri} ({what})")
    return actor


async def _done(
    ctx: HandlerContext, group: Actor, actor: Actor, activity: IncomingActivity, action: str,
    target: str, reason: str | None = None,
) -> None:
    await modlog.record(ctx.session, Moderator(actor.uri, actor), group, action, target,
                        reason, details={"activity": activity.id, "remote": True})
    ctx.outcome = f"{action} by remote moderator {actor.uri}"


def _reason(activity: IncomingActivity) -> str | None:
    summary = activity.document.get("summary")
    return summary.strip()[:1000] or None if isinstance(summary, str) else None


async def _remove(ctx: HandlerContext, activity: IncomingActivity, uri: str | None) -> None:
    post, group = await _post_in_local_group(ctx, uri)
    named = _named_groups(activity.document)
    if named and group.uri not in named:
        raise Ignored("removal names another group than the post's")
    actor = await _moderator(ctx, group, activity, "remove")
    if post.deleted_at is not None:
        raise Ignored("already removed")
    try:
        await moderation.remove_post(ctx.session, ctx.urls, group, post.uri, _reason(activity))
    except ValidationError as exc:
        raise Ignored(f"refused: {exc.reason}") from None
    await _done(ctx, group, actor, activity, "remove", post.uri, _reason(activity))


async def handle_delete(ctx: HandlerContext, activity: IncomingActivity) -> None:
    """An author deletes their own post; anyone else's Delete of a post in a local group is
    a moderator's removal (Lemmy sends it so, with the reason as `summary`)."""
    uri = activity.object_id
    post = await find_post(ctx.session, uri) if uri and uri != activity.actor else None
    if post is not None and post.group_id is not None:
        author = await ctx.session.get(Actor, post.author_id)
        if author is not None and author.uri != activity.actor:
            return await _remove(ctx, activity, uri)
    await delete_own_post(ctx, activity)


async def handle_block(ctx: HandlerContext, activity: IncomingActivity) -> None:
    target = id_of(activity.document.get("target"))
    group = await _local_group(ctx, target)
    if group is None and target is not None and not ctx.urls.is_local(target):
        return await handle_banned_from_remote_group(ctx, activity)
    if group is None:
        raise Ignored("Block without a local group as target")
    moderator = await _moderator(ctx, group, activity, "ban")
    if activity.object_id is None:
        raise Ignored("Block without an object")
    member = await ctx.resolver.actor(ctx.session, activity.object_id)
    try:
        await moderation.ban(ctx.session, ctx.urls, group, member, by=moderator,
                             reason=_reason(activity))
    except ValidationError as exc:
        raise Ignored(f"refused: {exc.reason}") from None
    await _done(ctx, group, moderator, activity, "ban", member.uri, _reason(activity))


async def _undo_block(ctx: HandlerContext, activity: IncomingActivity,
                      block: dict[str, Any]) -> None:
    group = await _local_group(ctx, id_of(block.get("target")))
    if group is None:
        raise Ignored("Undo of a Block without a local group as target")
    moderator = await _moderator(ctx, group, activity, "unban")
    uri = id_of(block.get("object"))
    member = (
        await ctx.session.execute(select(Actor).where(Actor.uri == uri))
    ).scalar_one_or_none() if uri else None
    if member is None:
        raise Ignored("Undo of a Block of someone we do not know")
    try:
        await moderation.unban(ctx.session, ctx.urls, group, member)
    except ValidationError as exc:
        raise Ignored(f"refused: {exc.reason}") from None
    await _done(ctx, group, moderator, activity, "unban", member.uri)


async def _lock(ctx: HandlerContext, activity: IncomingActivity, uri: str | None,
                *, locked: bool) -> None:
    post, group = await _post_in_local_group(ctx, uri)
    action = "lock" if locked else "unlock"
    moderator = await _moderator(ctx, group, activity, action)
    try:
        root = await moderation.set_locked(ctx.session, ctx.urls, group, post.uri,
                                           locked=locked)
    except ValidationError as exc:
        raise Ignored(f"refused: {exc.reason}") from None
    await _done(ctx, group, moderator, activity, action, root.uri)


async def handle_lock(ctx: HandlerContext, activity: IncomingActivity) -> None:
    await _lock(ctx, activity, activity.object_id, locked=True)


async def handle_undo(ctx: HandlerContext, activity: IncomingActivity) -> None:
    """Undo of a Block or a Lock here; every other Undo (follows, reactions) as before."""
    undone = activity.object
    kind = first_type(undone) if undone else None
    if undone is not None and kind == "Block":
        if id_of(undone.get("actor")) not in (None, activity.actor):
            raise Ignored("Undo of someone else's Block")
        return await _undo_block(ctx, activity, undone)
    if undone is not None and kind == "Lock":
        if id_of(undone.get("actor")) not in (None, activity.actor):
            raise Ignored("Undo of someone else's Lock")
        return await _lock(ctx, activity, id_of(undone.get("object")), locked=False)
    await undo_follow_or_reaction(ctx, activity)


async def _collection_owner(ctx: HandlerContext, target: str) -> tuple[Actor, str] | None:
    """The local group whose featured or moderators collection `target` is, and which."""
    for suffix, which in (("/featured", "featured"), ("/moderators", "moderators")):
        if target.endswith(suffix):
            group = await _local_group(ctx, target.removesuffix(suffix))
            if group is not None:
                return group, which
    return None


async def handle_add(ctx: HandlerContext, activity: IncomingActivity) -> None:
    await _add_or_remove(ctx, activity, add=True)


async def handle_remove(ctx: HandlerContext, activity: IncomingActivity) -> None:
    target = id_of(activity.document.get("target"))
    if target is not None and await _local_group(ctx, target) is not None:
        # Lemmy before 0.17: Remove{object: post, target: community} takes a post down.
        return await _remove(ctx, activity, activity.object_id)
    await _add_or_remove(ctx, activity, add=False)


async def _add_or_remove(ctx: HandlerContext, activity: IncomingActivity, *, add: bool) -> None:
    target = id_of(activity.document.get("target"))
    if target is None or activity.object_id is None:
        raise Ignored(f"{activity.type} without a target or an object")
    found = await _collection_owner(ctx, target)
    if found is None:
        return await _remote_group_roles(ctx, activity, target, add=add)
    group, which = found
    if which == "featured":
        action = "pin" if add else "unpin"
        moderator = await _moderator(ctx, group, activity, action)
        post, _ = await _post_in_local_group(ctx, activity.object_id)
        try:
            await moderation.set_pinned(ctx.session, group, post, pinned=add, urls=ctx.urls)
        except ValidationError as exc:
            raise Ignored(f"refused: {exc.reason}") from None
        return await _done(ctx, group, moderator, activity, action, post.uri)
    action = "add-moderator" if add else "remove-moderator"
    owner = await _moderator(ctx, group, activity, action, owner_only=True)
    person = await ctx.resolver.actor(ctx.session, activity.object_id)
    try:
        await moderation.set_moderator(ctx.session, ctx.urls, group, person, appoint=add)
    except ValidationError as exc:
        raise Ignored(f"refused: {exc.reason}") from None
    await _done(ctx, group, owner, activity, action, person.uri)


async def _remote_group_roles(
    ctx: HandlerContext, activity: IncomingActivity, target: str, *, add: bool
) -> None:
    """A group of another server appoints (or removes) one of our people as moderator."""
    if target != Urls.moderators(activity.actor) or host_of(target) != host_of(activity.actor):
        raise Ignored(f"{activity.type} of a collection that is not ours nor the sender's own")
    person = (
        await ctx.session.execute(
            select(Actor).where(Actor.uri == activity.object_id, Actor.local)
        )
    ).scalar_one_or_none()
    if person is None:
        raise Ignored("a remote group's moderators changed; none of them is ours")
    group = await ctx.resolver.actor(ctx.session, activity.actor)
    if group.type != "Group" or group.local:
        raise Ignored("moderators collection of an actor that is not a remote group")
    await learn_remote_role(ctx.session, group, person, moderator=add)
    ctx.outcome = f"{person.uri} {'moderates' if add else 'no longer moderates'} {group.uri}"


# What a group we follow announces about its own threads: it decides these for its threads.
GROUP_STATE_KINDS = frozenset({"Lock", "Undo", "Add", "Remove"})


async def apply_group_state(
    ctx: HandlerContext, announcer: Actor, inner: dict[str, Any]
) -> None:
    """A remote group's Announce of a lock or a pin (its own, or its moderator's that it
    accepted) of one of its threads we hold: our copy shows it too."""
    kind = first_type(inner)
    change = inner
    undo = kind == "Undo"
    if undo:
        undone = inner.get("object")
        if not isinstance(undone, dict):
            raise Ignored("Announce of an Undo without the undone activity")
        change, kind = undone, first_type(undone)
    target = id_of(change.get("target"))
    featured = target is not None and target == f"{announcer.uri}/featured"
    if kind == "Lock" or (kind in ("Add", "Remove") and featured and not undo):
        uri = id_of(change.get("object"))
        post = await find_post(ctx.session, uri) if uri else None
        if post is None or post.local or post.group_id != announcer.id:
            raise Ignored(f"Announce of {kind} of a post that is not this group's")
        if kind == "Lock":
            post.locked_at = None if undo else post.locked_at or now()
        else:
            post.pinned_at = now() if kind == "Add" else None
        ctx.outcome = f"{'undo ' if undo else ''}{kind} from {announcer.uri} applied"
        return
    raise Ignored(f"Announce of {kind} is not shown here")
