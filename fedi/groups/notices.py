"""Notifications for the people of this server: recorded where the event happens, read
through the privacy gate.

Recording is called by the use cases, inside their transaction, for local and remote causes
alike (a reply that came over federation notifies as a local reply does). Only local people
are notified, never of their own doing, and never of a post the gate would not show them
now. A post notifies each person once: a reply that also mentions its parent's author is one
`reply`. Rows name ids only; a page asks the gate again when it shows them, so a post that
was deleted or left behind (the reader left the group) shows as a notice without content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.content import html_to_text
from fedi.groups.roles import moderators
from fedi.groups.threads import find_post
from fedi.groups.viewers import facts_for, viewer_for
from fedi.privacy.access import can_view
from fedi.store.memo import memo_of, remembered
from fedi.store.models import Actor, Follow, Notification, PersonRelation, Post, now

REPLY: Final = "reply"
MENTION: Final = "mention"
JOIN_APPROVED: Final = "join_approved"
JOIN_REFUSED: Final = "join_refused"
POST_HELD: Final = "post_held"
POST_APPROVED: Final = "post_approved"
POST_REMOVED: Final = "post_removed"
FAVOURITE: Final = "favourite"  # someone liked the person's post
REBLOG: Final = "reblog"  # someone boosted the person's post
FOLLOW: Final = "follow"  # someone followed the person
STATUS: Final = "status"  # an account the person asked to hear of posted
FOLLOW_REQUEST: Final = "follow_request"  # someone asks to join a group the person moderates
# A remote post may name any number of people: only so many of ours are asked about.
MAX_MENTIONED: Final = 50
PAGE_SIZE: Final = 30
EXCERPT: Final = 200


def _person(actor: Actor | None) -> TypeGuard[Actor]:
    return actor is not None and actor.local and actor.type == "Person"


async def _tell(
    session: AsyncSession, recipient: Actor, kind: str, *, actor_id: int | None = None,
    post: Post | None = None, group_id: int | None = None, reason: str | None = None,
) -> None:
    session.add(Notification(
        recipient_id=recipient.id, kind=kind, actor_id=actor_id,
        post_id=post.id if post else None,
        group_id=group_id if group_id is not None else (post.group_id if post else None),
        reason=reason,
    ))


async def _tell_author(
    session: AsyncSession, post: Post, kind: str, reason: str | None = None
) -> None:
    """The author hears what became of their own post (the gate's author rule lets them)."""
    author = await session.get(Actor, post.author_id)
    if _person(author):
        await _tell(session, author, kind, actor_id=post.group_id, post=post, reason=reason)


def _mentioned(post: Post) -> list[str]:
    try:
        document: Any = json.loads(post.document)
    except ValueError:
        return []
    tags = document.get("tag") if isinstance(document, dict) else None
    items = tags if isinstance(tags, list) else [tags]
    hrefs = [t.get("href") for t in items if isinstance(t, dict) and t.get("type") == "Mention"]
    return list(dict.fromkeys(h for h in hrefs if isinstance(h, str)))


async def _notified(session: AsyncSession, author_id: int) -> tuple[int, ...]:
    """The people who asked to hear of the author's new posts."""
    memo = memo_of(session)
    if memo is not None and memo.actors:
        # An inbox batch: asked once for all of its actors, not once per post's author
        # (bench.processing: a batch of 100 new threads by 100 members).
        batch = await remembered(session, "notify: the batch's actors", _RELATIONS,
                                 lambda: _notified_of(session, memo.actors))
        if author_id in batch:
            return batch[author_id]

    async def load() -> tuple[int, ...]:
        return tuple((await session.execute(_NOTIFIED, {"author_id": author_id})).scalars())

    return await remembered(session, ("notify", author_id), _RELATIONS, load)


async def _notified_of(session: AsyncSession, uris: frozenset[str]) -> dict[int, tuple[int, ...]]:
    """Actor id → who asked to hear of their posts, for each known actor among `uris`."""
    found: dict[int, tuple[int, ...]] = {}
    rows = await session.execute(_NOTIFIED_OF, {"uris": sorted(uris)})
    for target_id, actor_id in rows.all():
        found[target_id] = found.get(target_id, ()) + ((actor_id,) if actor_id else ())
    return found


_RELATIONS = frozenset({"person_relations"})
# Built once: every post a batch stores asks it (bench.processing).
_NOTIFIED = select(PersonRelation.actor_id).where(
    PersonRelation.target_id == bindparam("author_id"), PersonRelation.kind == "notify")
# One row per actor with none, one per person with one (ix_person_relations_target).
_NOTIFIED_OF = select(Actor.id, PersonRelation.actor_id).outerjoin(
    PersonRelation, (PersonRelation.target_id == Actor.id) & (PersonRelation.kind == "notify")
).where(Actor.uri.in_(bindparam("uris", expanding=True)))


async def _reached(session: AsyncSession, post: Post) -> None:
    """Tell the parent's author of a reply, and the people a visible post mentions."""
    kinds: dict[int, str] = {}
    if post.in_reply_to:
        parent = await find_post(session, post.in_reply_to)
        if parent is not None:
            kinds[parent.author_id] = REPLY
    uris = _mentioned(post)
    if uris:
        named = await session.execute(
            select(Actor.id).where(Actor.uri.in_(uris), Actor.local, Actor.type == "Person")
            .limit(MAX_MENTIONED)
        )
        for actor_id in named.scalars():
            kinds.setdefault(actor_id, MENTION)
    # People who asked to hear of the author's new posts (a follow with notify, from apps).
    for actor_id in await _notified(session, post.author_id):
        kinds.setdefault(actor_id, STATUS)
    kinds.pop(post.author_id, None)  # nobody is told of their own post
    if not kinds:
        return
    told = set((await session.execute(
        select(Notification.recipient_id).where(
            Notification.post_id == post.id, Notification.kind.in_((REPLY, MENTION, STATUS)))
    )).scalars())
    facts = await facts_for(session, post)
    for recipient_id, kind in kinds.items():
        recipient = await session.get(Actor, recipient_id)
        if recipient_id in told or not _person(recipient):
            continue
        if can_view(facts, await viewer_for(session, recipient.uri)):
            await _tell(session, recipient, kind, actor_id=post.author_id, post=post)


async def post_stored(session: AsyncSession, post: Post) -> None:
    """A new post, stored with its held state and named audience: its author hears that it
    waits for a moderator (and why), or the people it answers and names hear of it."""
    if post.held is not None:
        await _tell_author(session, post, POST_HELD, post.held)
    else:
        await _reached(session, post)


async def post_held(session: AsyncSession, post: Post) -> None:
    """A visible post was held afterwards (members' reports)."""
    await _tell_author(session, post, POST_HELD, post.held)


async def post_approved(session: AsyncSession, post: Post) -> None:
    """A moderator let a held post through: its author hears, and now that the post can be
    seen, so do the people it answers and names (if they were not told before)."""
    await _tell_author(session, post, POST_APPROVED)
    await _reached(session, post)


async def post_removed(session: AsyncSession, post: Post, reason: str | None) -> None:
    await _tell_author(session, post, POST_REMOVED, reason)


async def join_answered(
    session: AsyncSession, group: Actor, person: Actor, *, approved: bool
) -> None:
    """A moderator answered a person's request to join (here, or a group elsewhere)."""
    if _person(person):
        await _tell(session, person, JOIN_APPROVED if approved else JOIN_REFUSED,
                    actor_id=group.id, group_id=group.id)


async def follow_answered(
    session: AsyncSession, follow: Follow, target: Actor, *, accepted: bool
) -> None:
    """A group elsewhere answered our person's pending Follow (called before the state
    changes: a repeated Accept of a membership already held tells nobody again)."""
    if follow.state != "pending" or target.type != "Group":
        return
    person = await session.get(Actor, follow.follower_id)
    if person is not None:
        await join_answered(session, target, person, approved=accepted)


async def _told_before(session: AsyncSession, recipient_id: int, kind: str, actor_id: int,
                       *, post_id: int | None = None, group_id: int | None = None,
                       unread: bool = False) -> bool:
    """A like taken back and given again, a follow undone and made again: told once (or,
    with `unread`, not again while the last telling is unread)."""
    query = select(Notification.id).where(
        Notification.recipient_id == recipient_id, Notification.kind == kind,
        Notification.actor_id == actor_id, Notification.post_id == post_id,
        Notification.group_id == group_id)
    if unread:
        query = query.where(Notification.read_at.is_(None))
    return (await session.execute(query.limit(1))).first() is not None


async def liked(session: AsyncSession, post: Post, liker: Actor) -> None:
    """Someone here or elsewhere liked a post: its author hears (once per liker and post)."""
    author = await session.get(Actor, post.author_id)
    if not _person(author) or author.id == liker.id or post.deleted_at is not None:
        return
    if not await _told_before(session, author.id, FAVOURITE, liker.id, post_id=post.id,
                              group_id=post.group_id):
        await _tell(session, author, FAVOURITE, actor_id=liker.id, post=post)


async def boosted(session: AsyncSession, post: Post, booster: Actor) -> None:
    """Someone boosted a post: its author hears (once per booster and post)."""
    author = await session.get(Actor, post.author_id)
    if not _person(author) or author.id == booster.id or post.deleted_at is not None:
        return
    if not await _told_before(session, author.id, REBLOG, booster.id, post_id=post.id,
                              group_id=post.group_id):
        await _tell(session, author, REBLOG, actor_id=booster.id, post=post)


async def followed(session: AsyncSession, follower: Actor, target: Actor) -> None:
    """Someone now follows one of our people (accepted: people take follows without asking)."""
    if _person(target) and follower.id != target.id and not await _told_before(
            session, target.id, FOLLOW, follower.id):
        await _tell(session, target, FOLLOW, actor_id=follower.id)


async def join_requested(session: AsyncSession, group: Actor, person: Actor) -> None:
    """A request to join waits for an answer: the group's moderators here hear of it (a
    request withdrawn and made again tells them again once they have read the last)."""
    for moderator in await moderators(session, group):
        if _person(moderator) and moderator.id != person.id and not await _told_before(
                session, moderator.id, FOLLOW_REQUEST, person.id, group_id=group.id,
                unread=True):
            await _tell(session, moderator, FOLLOW_REQUEST, actor_id=person.id,
                        group_id=group.id)


# Reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    id: int
    kind: str
    created_at: float
    unread: bool
    actor: Actor | None
    group: Actor | None
    reason: str | None
    had_post: bool
    # The post as the reader may see it now; None when the gate says no (or it had none).
    post: Post | None
    excerpt: str
    thread: Post | None  # the thread's first post, when the reader may see it


@dataclass(frozen=True)
class NoticePage:
    notices: list[Notice]
    older: int | None  # the `before` of the next page, None on the last


async def unread_count(session: AsyncSession, person_id: int) -> int:
    """One COUNT on the (recipient_id, read_at) index: cheap enough for every page."""
    found = await session.execute(
        select(func.count()).select_from(Notification)
        .where(Notification.recipient_id == person_id, Notification.read_at.is_(None))
    )
    return int(found.scalar_one())


async def page(
    session: AsyncSession, person: Actor, *, before: int | None = None,
    limit: int = PAGE_SIZE,
) -> NoticePage:
    """A person's notifications, newest first, each post shown only if the gate lets them."""
    query = select(Notification).where(Notification.recipient_id == person.id)
    if before is not None:
        query = query.where(Notification.id < before)
    rows = list((await session.execute(
        query.order_by(Notification.id.desc()).limit(limit + 1))).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    viewer = await viewer_for(session, person.uri)
    notices: list[Notice] = []
    for row in rows:
        post = await session.get(Post, row.post_id) if row.post_id else None
        if post is not None and not can_view(await facts_for(session, post), viewer):
            post = None
        thread = None
        if post is not None and post.thread_id not in (None, post.id):
            root = await session.get(Post, post.thread_id)
            if root is not None and can_view(await facts_for(session, root), viewer):
                thread = root
        notices.append(Notice(
            id=row.id, kind=row.kind, created_at=row.created_at, unread=row.read_at is None,
            actor=await session.get(Actor, row.actor_id) if row.actor_id else None,
            group=await session.get(Actor, row.group_id) if row.group_id else None,
            reason=row.reason, had_post=row.post_id is not None, post=post,
            thread=thread or post,
            excerpt=html_to_text(post.content)[:EXCERPT] if post is not None else "",
        ))
    return NoticePage(notices, rows[-1].id if more and rows else None)


async def mark_read(
    session: AsyncSession, person: Actor, notice_id: int | None = None
) -> int:
    """Mark one of the person's notifications read, or all of them (None); how many changed.
    Another person's notification is not theirs to mark: it matches nothing."""
    conditions = [Notification.recipient_id == person.id, Notification.read_at.is_(None)]
    if notice_id is not None:
        conditions.append(Notification.id == notice_id)
    result = await session.execute(
        update(Notification).where(*conditions).values(read_at=now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def read_through(session: AsyncSession, person: Actor, last_id: int) -> int:
    """Mark read every notification of the person up to `last_id` (a client's marker)."""
    result = await session.execute(
        update(Notification).where(
            Notification.recipient_id == person.id, Notification.id <= last_id,
            Notification.read_at.is_(None)).values(read_at=now()))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def dismiss(session: AsyncSession, person: Actor, notice_id: int | None = None) -> int:
    """Forget one of the person's notifications, or all of them (None); how many went.
    Another person's notification matches nothing."""
    conditions = [Notification.recipient_id == person.id]
    if notice_id is not None:
        conditions.append(Notification.id == notice_id)
    result = await session.execute(delete(Notification).where(*conditions))
    return int(result.rowcount)  # type: ignore[attr-defined]
