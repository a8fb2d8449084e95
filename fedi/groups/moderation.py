"""What moderators do to a group: decide join requests, ban, appoint moderators, pin.

Each decision that another server should know about is federated: Accept/Reject to the
requester, Block (Lemmy's form of a ban) to the banned member's server, Add/Remove of the
moderators collection to the members.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.content import sanitize_html
from fedi.delivery.enqueue import enqueue
from fedi.errors import ValidationError
from fedi.groups import modlog, notices
from fedi.groups.ban_deliveries import drop_queued_for
from fedi.groups.membership import follow_document, respond_to_follow
from fedi.groups.relay import announce_to_members, relay_activity, relay_post, withdraw_boost
from fedi.groups.threads import find_post
from fedi.live.source import post_stored
from fedi.privacy.domains import covers, normalise_domain
from fedi.privacy.visibility import parse_reply_policy
from fedi.store.models import (
    Actor,
    Follow,
    Group,
    GroupBan,
    GroupDomainBlock,
    GroupRole,
    Post,
    now,
)
from fedi.urls import Urls, new_id


@dataclass(frozen=True)
class JoinRequest:
    actor: Actor
    answers: str | None
    requested_at: float


async def pending(session: AsyncSession, group: Actor) -> list[JoinRequest]:
    rows = await session.execute(
        select(Actor, Follow)
        .join(Follow, Follow.follower_id == Actor.id)
        .where(Follow.target_id == group.id, Follow.state == "pending")
        .order_by(Follow.created_at)
    )
    return [JoinRequest(actor, row.answers, row.created_at) for actor, row in rows.all()]


async def _request(session: AsyncSession, group: Actor, actor: Actor) -> Follow:
    row = (
        await session.execute(
            select(Follow).where(
                Follow.target_id == group.id, Follow.follower_id == actor.id,
                Follow.state == "pending",
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise ValidationError(f"{actor.uri} has no pending request to join {group.username}")
    return row


async def approve(session: AsyncSession, urls: Urls, group: Actor, actor: Actor) -> None:
    row = await _request(session, group, actor)
    row.state = "accepted"
    row.updated_at = now()
    await notices.join_answered(session, group, actor, approved=True)
    await respond_to_follow(session, urls, group, actor, follow_document(row, actor, group),
                            "Accept")


async def reject(session: AsyncSession, urls: Urls, group: Actor, actor: Actor) -> None:
    row = await _request(session, group, actor)
    document = follow_document(row, actor, group)
    await session.delete(row)
    await notices.join_answered(session, group, actor, approved=False)
    await respond_to_follow(session, urls, group, actor, document, "Reject")


async def ban(
    session: AsyncSession, urls: Urls, group: Actor, actor: Actor, *, by: Actor | None,
    reason: str | None, expires_at: float | None = None,
) -> None:
    """Ban `actor` from `group`, until `expires_at` if given (the worker lifts it then)."""
    if expires_at is not None and expires_at <= now():
        raise ValidationError("a ban's end must be in the future")
    if actor.id == group.id or (by is not None and actor.id == by.id):
        raise ValidationError("a moderator cannot ban the group or themselves")
    owner = (
        await session.execute(
            select(GroupRole).where(
                GroupRole.group_id == group.id, GroupRole.actor_id == actor.id,
                GroupRole.role == "owner",
            )
        )
    ).scalar_one_or_none()
    if owner is not None:
        raise ValidationError("the owner of a group cannot be banned from it")
    existing = (
        await session.execute(
            select(GroupBan).where(GroupBan.group_id == group.id, GroupBan.actor_id == actor.id)
        )
    ).scalar_one_or_none()
    if existing is None:
        session.add(GroupBan(group_id=group.id, actor_id=actor.id, reason=reason,
                             banned_by=by.id if by else None, expires_at=expires_at))
    else:
        existing.expires_at = expires_at
    await session.execute(
        delete(Follow).where(Follow.target_id == group.id, Follow.follower_id == actor.id)
    )
    await session.execute(
        delete(GroupRole).where(GroupRole.group_id == group.id, GroupRole.actor_id == actor.id)
    )
    await drop_queued_for(session, group, actor)  # before the Block, which must still go
    # Lemmy federates a community ban as Block{object: user, target: community}.
    block = activities.activity(
        "Block", urls.activity(new_id()), group.uri, actor.uri, to=[actor.uri], target=group.uri
    )
    if reason:
        block["summary"] = reason
    if actor.inbox and not actor.local:
        await enqueue(session, group, block, [actor.inbox])


async def unban(session: AsyncSession, urls: Urls, group: Actor, actor: Actor) -> None:
    result = await session.execute(
        delete(GroupBan).where(GroupBan.group_id == group.id, GroupBan.actor_id == actor.id)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise ValidationError(f"{actor.uri} is not banned from {group.username}")
    block = activities.activity(
        "Block", urls.activity(new_id()), group.uri, actor.uri, to=[actor.uri], target=group.uri
    )
    undo = activities.undo(urls.activity(new_id()), group.uri, block)
    if actor.inbox and not actor.local:
        await enqueue(session, group, undo, [actor.inbox])


async def set_moderator(
    session: AsyncSession, urls: Urls, group: Actor, actor: Actor, *, appoint: bool
) -> None:
    role = (
        await session.execute(
            select(GroupRole).where(GroupRole.group_id == group.id, GroupRole.actor_id == actor.id)
        )
    ).scalar_one_or_none()
    if appoint:
        if role is not None:
            raise ValidationError(f"{actor.uri} is already the group's {role.role}")
        session.add(GroupRole(group_id=group.id, actor_id=actor.id, role="moderator"))
    else:
        if role is None or role.role != "moderator":
            raise ValidationError(f"{actor.uri} is not a moderator of {group.username}")
        await session.delete(role)
    change = activities.activity(
        "Add" if appoint else "Remove", urls.activity(new_id()), group.uri, actor.uri,
        to=[Urls.followers(group.uri)], target=Urls.moderators(group.uri),
    )
    await announce_to_members(session, group, change)


async def set_pinned(
    session: AsyncSession, group: Actor, post: Post, *, pinned: bool, urls: Urls | None = None
) -> None:
    """Pin or unpin a thread; members' servers learn it as Lemmy does: Add/Remove on the
    group's featured collection."""
    if post.group_id != group.id or post.in_reply_to is not None:
        raise ValidationError("only a thread of this group can be pinned")
    post.pinned_at = now() if pinned else None
    if urls is not None:
        change = activities.activity(
            "Add" if pinned else "Remove", urls.activity(new_id()), group.uri, post.uri,
            to=[Urls.followers(group.uri)], target=f"{group.uri}/featured",
        )
        await relay_activity(session, urls, group, change, author_uri=group.uri, post=post)


async def held_posts(session: AsyncSession, group: Actor) -> list[tuple[Post, Actor]]:
    rows = await session.execute(
        select(Post, Actor).join(Actor, Actor.id == Post.author_id)
        .where(Post.group_id == group.id, Post.held.is_not(None), Post.deleted_at.is_(None))
        .order_by(Post.published)
    )
    return [(post, author) for post, author in rows.all()]


async def _held(session: AsyncSession, group: Actor, uri: str) -> tuple[Post, Actor]:
    for post, author in await held_posts(session, group):
        if post.uri == uri:
            return post, author
    raise ValidationError(f"{uri} is not waiting for approval in {group.username}")


async def approve_post(session: AsyncSession, urls: Urls, group: Actor, uri: str) -> Post:
    """Let a held post (premoderation, reply approval) through: it is relayed now."""
    post, author = await _held(session, group, uri)
    reason = post.held
    post.held = None
    post_stored(session, post)  # live readers see it now
    await notices.post_approved(session, post)
    if reason == "reports":
        return post  # hidden after reports: it was relayed before, it is only shown again
    activity = json.loads(post.activity) if post.activity else activities.create(
        urls.activity(new_id()), json.loads(post.document)
    )
    await relay_post(session, urls, group, post, activity, author_uri=author.uri)
    if reason == "reply-approval" and author.inbox and not author.local:
        # GoToSocial-style approval of an interaction: Accept of the reply.
        accept = activities.respond(
            "Accept", urls.activity(new_id()), group.uri, activity, author.uri
        )
        await enqueue(session, group, accept, [author.inbox])
    return post


async def reject_post(session: AsyncSession, urls: Urls, group: Actor, uri: str) -> Post:
    post, author = await _held(session, group, uri)
    post.deleted_at = now()
    post.content = ""
    await notices.post_removed(session, post, "not approved by a moderator")
    if post.activity and author.inbox and not author.local:
        reject = activities.respond(
            "Reject", urls.activity(new_id()), group.uri, json.loads(post.activity), author.uri
        )
        await enqueue(session, group, reject, [author.inbox])
    return post


async def _group_post(session: AsyncSession, group: Actor, uri: str) -> Post:
    post = await find_post(session, uri)
    if post is None or post.group_id != group.id or post.deleted_at is not None:
        raise ValidationError(f"{uri} is not a post in {group.username}")
    return post


async def remove_post(
    session: AsyncSession, urls: Urls, group: Actor, uri: str, reason: str | None
) -> Post:
    """A moderator takes a post down; the removal is announced to the members' servers."""
    post = await _group_post(session, group, uri)
    author = await session.get(Actor, post.author_id)
    removal = activities.activity(
        "Delete", urls.activity(new_id()), group.uri, {"id": post.uri, "type": "Tombstone"},
        to=[Urls.followers(group.uri)],
    )
    if reason:
        removal["summary"] = reason
    post.deleted_at = now()
    post.content = ""
    await notices.post_removed(session, post, reason)
    # Relayed to everyone who received the post: marked removed only after (a held post
    # is relayed to nobody).
    await relay_activity(session, urls, group, removal, author_uri=group.uri, post=post)
    await withdraw_boost(session, urls, group, post, author_uri=group.uri)
    post.held = "removed"
    if author is not None and author.inbox and not author.local:
        await enqueue(session, group, removal, [author.inbox])
    return post


async def set_locked(
    session: AsyncSession, urls: Urls, group: Actor, uri: str, *, locked: bool
) -> Post:
    """A locked thread takes no more replies (Lemmy's Lock, announced to members)."""
    post = await _group_post(session, group, uri)
    root = await session.get(Post, post.thread_id) if post.thread_id else post
    if root is None:
        raise ValidationError(f"{uri} has no thread")
    root.locked_at = now() if locked else None
    lock = activities.activity(
        "Lock", urls.activity(new_id()), group.uri, root.uri, to=[Urls.followers(group.uri)]
    )
    change = lock if locked else activities.undo(urls.activity(new_id()), group.uri, lock)
    await relay_activity(session, urls, group, change, author_uri=group.uri, post=root)
    return root


async def block_domain(session: AsyncSession, group: Actor, raw: str, *, block: bool) -> str:
    """Keep a whole server out of one group; its members there leave the group."""
    domain = normalise_domain(raw)
    existing = (
        await session.execute(
            select(GroupDomainBlock).where(
                GroupDomainBlock.group_id == group.id, GroupDomainBlock.domain == domain
            )
        )
    ).scalar_one_or_none()
    if not block:
        if existing is None:
            raise ValidationError(f"{domain} is not blocked from {group.username}")
        await session.delete(existing)
        return domain
    if existing is None:
        session.add(GroupDomainBlock(group_id=group.id, domain=domain))
    followers = await session.execute(
        select(Follow, Actor).join(Actor, Actor.id == Follow.follower_id)
        .where(Follow.target_id == group.id)
    )
    for follow, actor in followers.all():
        if covers(domain, actor.domain):
            await session.delete(follow)
    return domain


async def update_settings(
    session: AsyncSession, group: Actor, *, premoderation: bool | None = None,
    report_threshold: int | None = None, reply_policy: str | None = None,
) -> Group:
    config = await session.get(Group, group.id)
    if config is None:
        raise ValidationError(f"{group.username} has no settings")
    if premoderation is not None:
        config.premoderation = premoderation
    if report_threshold is not None:
        if report_threshold < 0:
            raise ValidationError("the report threshold is 0 (off) or more")
        config.report_threshold = report_threshold
    if reply_policy is not None:
        config.reply_policy = parse_reply_policy(reply_policy).value
    return config


# Marks of a moderator's removal: remove_post's, and moderation.reports.REMOVED_MARK (a report
# resolved by `fedi admin report-resolve --action remove`).
RESTORABLE = ("removed", "removed by a moderator")


async def restore_post(session: AsyncSession, urls: Urls, group: Actor, uri: str) -> Post:
    """Undo a moderator's removal: the post is shown again and the members' servers get
    Undo(Delete), as Lemmy restores a removed post."""
    post = await find_post(session, uri)
    if (post is None or post.group_id != group.id or post.deleted_at is None
            or post.held not in RESTORABLE):
        raise ValidationError(f"{uri} is not a post a moderator removed from {group.username}")
    if not post.content:  # remove_post empties it; the stored object still has it
        kept = json.loads(post.document).get("content")
        post.content = sanitize_html(kept) if isinstance(kept, str) else ""
    post.deleted_at = None
    post.held = None
    removal = activities.activity(
        "Delete", urls.activity(new_id()), group.uri, {"id": post.uri, "type": "Tombstone"},
        to=[Urls.followers(group.uri)],
    )
    undo = activities.undo(urls.activity(new_id()), group.uri, removal)
    await relay_activity(session, urls, group, undo, author_uri=group.uri, post=post)
    post_stored(session, post)
    return post


async def lift_expired_bans(session: AsyncSession, urls: Urls, at: float) -> list[GroupBan]:
    """Lift every ban whose end has passed, as `unban` does (their servers get Undo Block),
    each on the group's record under the server itself."""
    expired = list((await session.execute(
        select(GroupBan).where(GroupBan.expires_at.is_not(None), GroupBan.expires_at <= at)
        .order_by(GroupBan.id).limit(100)
    )).scalars())
    for ban_row in expired:
        group = await session.get(Actor, ban_row.group_id)
        person = await session.get(Actor, ban_row.actor_id)
        if group is None or person is None:
            await session.delete(ban_row)
            continue
        await unban(session, urls, group, person)
        await modlog.record(session, modlog.Moderator("fedi (ban expired)", None), group,
                            "unban", person.uri, reason="the ban's time ended")
    return expired

