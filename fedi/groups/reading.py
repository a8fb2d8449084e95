"""What a viewer may read: the directory, a home feed, a group's threads, a thread as a
tree, a person's posts. Use cases for the web pages, the CLI and the client API alike.

Every post shown goes through the one gate (fedi.privacy.access): SQL only narrows the
candidates (a superset), `Gate` decides. The gate asks a reply's parent chain first ("a reply
is never more visible than what it answers"); `Gate` evaluates each chain once, top down,
for a whole page of posts, instead of once per post as `viewers.facts_for` does (a thread of
1,000 replies would otherwise load 1,000 chains).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, cast

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, defer

from fedi.errors import FediError, FetchError, ValidationError
from fedi.groups.roles import moderators, standing
from fedi.groups.viewers import MAX_DEPTH
from fedi.privacy.access import PostFacts, Viewer, can_reply, can_view, listed
from fedi.privacy.visibility import ReplyPolicy, Visibility
from fedi.store.models import Actor, Follow, Group, Post, PostAudience, Reaction
from fedi.urls import Urls

PAGE_SIZE = 25
MAX_PAGE = 10_000
NEST_LIMIT = 8  # levels of replies drawn nested; deeper ones continue on their own page
THREAD_LIMIT = 5_000  # posts of one thread read for one page
# A thread page draws at most this many replies below its post, and at most TOP_PER_PAGE of
# the post's direct replies; the rest are behind "more replies" links (as Reddit and Lemmy
# do): rendering is what a long thread costs.
REPLIES_PER_PAGE = 200
TOP_PER_PAGE = 100
HOT_GRAVITY_HOURS = 2.0
# The "active" sort ranks the threads found among a group's newest posts: this many at
# first, growing fourfold up to the most, past which the database ranks every thread.
ACTIVITY_WINDOW = 256
ACTIVITY_WINDOW_MAX = 4096

# Silenced servers' posts stay out of listings for people who are not members.
Silenced = Callable[[str], Awaitable[bool]]
T = TypeVar("T")
S = TypeVar("S", bound=StrEnum)
# Enum lookups by value, without Enum.__call__ (a thousand of them per long thread).
VISIBILITIES = {v.value: v for v in Visibility}
REPLY_POLICIES = {p.value: p for p in ReplyPolicy}
LIGHT = (defer(Post.document), defer(Post.activity))  # raw JSON is never shown


class ThreadSort(StrEnum):
    HOT = "hot"
    NEW = "new"
    ACTIVE = "active"


class GroupSort(StrEnum):
    ACTIVITY = "activity"
    NEWEST = "newest"
    MEMBERS = "members"


def parse_sort(kind: type[S], raw: str | None, default: S) -> S:
    try:
        return kind(raw) if raw else default
    except ValueError:
        return default


def parse_page(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and 0 < int(raw) <= MAX_PAGE else 1


@dataclass
class Entry:
    """One post as a viewer sees it, with what its actions need."""

    post: Post
    author: Actor
    depth: int = 0
    children: list[Entry] = field(default_factory=list)
    mine: bool = False
    can_reply: bool = False
    liked: bool = False
    disliked: bool = False
    reply_count: int = 0  # replies (all levels for a thread, direct for a reply) seen
    group: Actor | None = None
    locked: bool = False  # the thread takes no replies
    gone: str | None = None  # "removed" / "deleted": a place-holder for who could see it
    more: int = 0  # replies below it not drawn here: on the post's own page
    more_after: int | None = None  # the last reply drawn before those (the page's cursor)


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    page: int
    has_next: bool


@dataclass(frozen=True)
class ThreadPage:
    top: Entry
    newest: int  # the newest post of the tree before it was cut: live updates resume after it
    after: int | None  # the cursor this page started after (None: the first replies)


@dataclass(frozen=True)
class GroupCard:
    group: Actor
    members: int
    last_activity: float | None


@dataclass(frozen=True)
class Sidebar:
    group: Actor
    config: Group | None
    members: int
    moderators: list[Actor]
    membership: str  # none | pending | member | moderator | banned


# -- the gate, for many posts at once ----------------------------------------------------


class PostRow(Protocol):
    """What the gate and a thread's shape read of a post: a Post, or its Skeleton."""

    @property
    def id(self) -> int: ...
    @property
    def uri(self) -> str: ...
    @property
    def in_reply_to(self) -> str | None: ...
    @property
    def author_id(self) -> int: ...
    @property
    def group_id(self) -> int | None: ...
    @property
    def visibility(self) -> str: ...
    @property
    def reply_policy(self) -> str: ...
    @property
    def held(self) -> str | None: ...
    @property
    def deleted_at(self) -> float | None: ...


class Skeleton(NamedTuple):
    """A thread's post as a plain tuple (no ORM object; a named tuple reads its fields far
    faster than a Row does): the page draws a few hundred of a thread's thousands, and only
    those are loaded whole."""

    id: int
    uri: str
    in_reply_to: str | None
    author_id: int
    group_id: int | None
    visibility: str
    reply_policy: str
    held: str | None
    deleted_at: float | None
    locked_at: float | None


SKELETON = (Post.id, Post.uri, Post.in_reply_to, Post.author_id, Post.group_id,
            Post.visibility, Post.reply_policy, Post.held, Post.deleted_at, Post.locked_at)


class Gate:
    """can_view / can_reply for a set of posts and a viewer, with their parents loaded."""

    def __init__(self, viewer: Viewer, posts: dict[int, PostRow], own: dict[int, PostFacts],
                 by_uri: dict[str, int]) -> None:
        self.viewer = viewer
        self._posts = posts
        self._own = own  # each post's facts without its parent
        self._by_uri = by_uri
        self._seen: dict[int, bool] = {}
        self._with_parent: dict[int, PostFacts] = {}
        # Each post's parent among the loaded ones, found once (asked several times per
        # post, and a thread has thousands).
        self._parents = {
            post_id: by_uri.get(post.in_reply_to) if post.in_reply_to else None
            for post_id, post in posts.items()
        }

    def _parent(self, post_id: int) -> int | None:
        return self._parents[post_id]

    def _facts(self, post_id: int) -> PostFacts:
        """The post's facts with its parent's (trimmed: the parent's own chain is judged
        by `sees(parent)`, which callers ask first). Made once per post: a thread page asks
        `sees` and `may_reply` of each."""
        found = self._with_parent.get(post_id)
        if found is None:
            parent = self._parent(post_id)
            own = self._own[post_id]
            found = own if parent is None else PostFacts(
                author=own.author, group=own.group, visibility=own.visibility,
                audience=own.audience, reply_policy=own.reply_policy, held=own.held,
                deleted=own.deleted, parent=self._own[parent],
            )
            self._with_parent[post_id] = found
        return found

    def sees(self, post_id: int) -> bool:
        chain: list[int] = []
        current: int | None = post_id
        while current is not None and current not in self._seen and current not in chain:
            chain.append(current)
            current = self._parent(current)
            if len(chain) > THREAD_LIMIT:
                break
        for step in reversed(chain):
            parent = self._parent(step)
            above = True if parent is None or parent == step else self._seen.get(parent, False)
            self._seen[step] = above and can_view(self._facts(step), self.viewer)
        return self._seen[post_id]

    def would_see(self, post_id: int) -> bool:
        """Could this viewer see the post if it were not deleted (who learns it is gone)."""
        parent = self._parent(post_id)
        if parent is not None and not self.sees(parent):
            return False
        return can_view(replace(self._facts(post_id), deleted=False), self.viewer)

    def may_reply(self, post_id: int) -> bool:
        return self.sees(post_id) and can_reply(self._facts(post_id), self.viewer)

    def in_listing(self, post_id: int) -> bool:
        """Listed to anyone (public), or to members of the post's group, who see more."""
        facts = self._own[post_id]
        return self.sees(post_id) and (
            listed(facts) or self.viewer.is_member(facts.group)
            or self.viewer.moderates(facts.group)
        )

    def facts(self, post_id: int) -> PostFacts:
        return self._facts(post_id)


async def gate_for(session: AsyncSession, viewer: Viewer, posts: Iterable[PostRow]) -> Gate:
    """Load what the gate needs for these posts: their parents (up to MAX_DEPTH levels, as
    facts_for does), authors, groups and named audiences, in a few queries."""
    known: dict[int, PostRow] = {p.id: p for p in posts}
    by_uri = {p.uri: p.id for p in known.values()}
    wanted = {p.in_reply_to for p in known.values() if p.in_reply_to} - by_uri.keys()
    for _ in range(MAX_DEPTH):
        if not wanted:
            break
        found = (await session.execute(
            select(Post).options(*LIGHT).where(Post.uri.in_(wanted))
        )).scalars().all()
        for p in found:
            known[p.id] = p
            by_uri[p.uri] = p.id
        wanted = {p.in_reply_to for p in found if p.in_reply_to} - by_uri.keys()
    actor_ids = {p.author_id for p in known.values()} | {
        p.group_id for p in known.values() if p.group_id is not None}
    uris = dict((await session.execute(
        select(Actor.id, Actor.uri).where(Actor.id.in_(actor_ids))
    )).all()) if actor_ids else {}
    audience: dict[int, set[str]] = {}
    named = [p.id for p in known.values() if _names_people(p)]
    if named:
        rows = await session.execute(
            select(PostAudience.post_id, Actor.uri)
            .join(Actor, Actor.id == PostAudience.actor_id)
            .where(PostAudience.post_id.in_(named))
        )
        for post_id, uri in rows.all():
            audience.setdefault(post_id, set()).add(uri)
    own = {
        p.id: PostFacts(
            author=uris.get(p.author_id, ""),
            group=uris.get(p.group_id) if p.group_id is not None else None,
            visibility=VISIBILITIES[p.visibility],
            audience=frozenset(audience.get(p.id, ())),
            reply_policy=REPLY_POLICIES[p.reply_policy],
            held=p.held is not None,
            deleted=p.deleted_at is not None,
        )
        for p in known.values()
    }
    return Gate(viewer, known, own, by_uri)


NAMING = frozenset((Visibility.MENTIONED.value, Visibility.CIRCLE.value))
NAMING_POLICY = ReplyPolicy.MENTIONED.value


def _names_people(post: PostRow) -> bool:
    """Only these posts have rows in post_audience worth reading (see posting)."""
    return post.visibility in NAMING or post.reply_policy == NAMING_POLICY


# -- who the viewer is here -----------------------------------------------------------------


async def actor_row(session: AsyncSession, viewer: Viewer) -> Actor | None:
    """The viewer's own row, read once per session (a page asks for it in several places)."""
    if viewer.actor is None:
        return None
    key = ("fedi.reading.actor_row", viewer.actor)
    if key not in session.info:
        session.info[key] = (await session.execute(
            select(Actor).where(Actor.uri == viewer.actor)
        )).scalar_one_or_none()
    found: Actor | None = session.info[key]
    return found


async def membership(session: AsyncSession, group: Actor, person: Actor | None) -> str:
    """none | pending | member | moderator | banned: what the group's actions offer."""
    if person is None:
        return "none"
    found = await standing(session, group, person)
    return "moderator" if found.moderates else found.value


async def _reactions(
    session: AsyncSession, person: Actor | None, post_ids: Sequence[int]
) -> dict[int, set[str]]:
    if person is None or not post_ids:
        return {}
    rows = await session.execute(
        select(Reaction.post_id, Reaction.type)
        .where(Reaction.actor_id == person.id, Reaction.post_id.in_(post_ids))
    )
    found: dict[int, set[str]] = {}
    for post_id, kind in rows.all():
        found.setdefault(post_id, set()).add(kind)
    return found


# -- the directory --------------------------------------------------------------------------


def _search(q: str) -> ColumnElement[bool]:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return or_(*(func.lower(func.coalesce(column, "")).like(pattern, escape="\\")
                 for column in (Actor.username, Actor.name, Actor.summary)))


async def directory(
    session: AsyncSession, *, q: str = "", sort: GroupSort = GroupSort.ACTIVITY, page: int = 1,
) -> Listing[GroupCard]:
    """This server's groups that are not hidden; activity is the newest post anyone may see
    listed, so the order tells nobody about members-only posts."""
    members = (
        select(Follow.target_id.label("gid"), func.count().label("n"))
        .where(Follow.state == "accepted").group_by(Follow.target_id).subquery()
    )
    # Per group, so each is one walk down the group's date index (not every post grouped).
    activity = (
        select(func.max(Post.published))
        .where(Post.group_id == Actor.id, Post.deleted_at.is_(None), Post.held.is_(None),
               Post.visibility == "public")
        .correlate(Actor).scalar_subquery().label("last_activity")
    )
    count = func.coalesce(members.c.n, 0)
    query = (
        select(Actor, count, activity)
        .join(Group, Group.actor_id == Actor.id)
        .outerjoin(members, members.c.gid == Actor.id)
        .where(Actor.local, Actor.type == "Group", Group.privacy != "hidden")
    )
    if q.strip():
        query = query.where(_search(q.strip()[:100]))
    order: list[Any] = (
        [activity.desc().nulls_last()] if sort is GroupSort.ACTIVITY
        else [Group.created_at.desc()] if sort is GroupSort.NEWEST else [count.desc()]
    )
    rows = (await session.execute(
        query.order_by(*order, Actor.username).offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    )).all()
    cards = [GroupCard(group, int(n), at) for group, n, at in rows[:PAGE_SIZE]]
    return Listing(cards, page, len(rows) > PAGE_SIZE)


# -- thread listings ------------------------------------------------------------------------


def _counts_as_activity() -> ColumnElement[bool]:
    """A thread's activity is its newest post that is neither removed nor waiting for a
    moderator, or its first post (a held thread, which only moderators list, is as active as
    its own date)."""
    return and_(Post.deleted_at.is_(None), or_(Post.held.is_(None), Post.id == Post.thread_id))


def _last_activity() -> Any:
    """Per thread: when it was last active (see `_counts_as_activity`)."""
    return (
        select(Post.thread_id.label("tid"), func.max(Post.published).label("at"))
        .where(_counts_as_activity())
        .group_by(Post.thread_id)
    )


async def _active_ids(
    session: AsyncSession, groups: Sequence[int], roots: ColumnElement[bool], start: int,
    count: int, *, window: int = ACTIVITY_WINDOW,
) -> list[int]:
    """Ids of the threads in `groups` whose first post meets `roots`, most recently active
    first, `count` of them from `start`.

    The active threads are among the groups' newest posts, so the walk reads the newest
    `window` posts (by the group's date index) and ranks the threads found there: a thread
    whose newest post is in the window has its activity exact, and every thread not in it
    was last active before the window's oldest post. When that does not give enough
    threads the window grows; for deep pages the database ranks every thread instead."""
    wanted = start + count
    size = max(window, 4 * wanted) if window else 0
    while 0 < size <= ACTIVITY_WINDOW_MAX:
        recent = (await session.execute(
            select(Post.thread_id, Post.published)
            .where(Post.group_id.in_(groups), _counts_as_activity())
            .order_by(Post.published.desc()).limit(size)
        )).all()
        complete = len(recent) < size
        cutoff = None if complete else recent[-1][1]
        last: dict[int, float] = {}
        for tid, at in recent:
            if tid is not None and tid not in last and (cutoff is None or at > cutoff):
                last[tid] = at  # newest first: the first seen is the thread's newest
        found = set((await session.execute(
            select(Post.id).where(Post.id.in_(list(last)), Post.thread_id == Post.id, roots)
        )).scalars()) if last else set()
        if complete or len(found) >= wanted:
            return sorted(found, key=lambda t: (-last[t], -t))[start:wanted]
        size *= 4
    activity = _last_activity().where(Post.group_id.in_(groups)).subquery()
    return list((await session.execute(
        select(Post.id).where(Post.group_id.in_(groups), Post.thread_id == Post.id, roots)
        .outerjoin(activity, activity.c.tid == Post.id)
        .order_by(func.coalesce(activity.c.at, Post.published).desc(), Post.id.desc())
        .offset(start).limit(count)
    )).scalars())


def _candidates(viewer: Viewer, person: Actor | None, group: Actor | None) -> ColumnElement[bool]:
    """A superset of what the gate will let this viewer see (it decides after)."""
    if group is not None and viewer.moderates(group.uri):
        return Post.deleted_at.is_(None)
    allowed = [Visibility.PUBLIC.value]
    if group is None or viewer.is_member(group.uri):
        allowed += [Visibility.UNLISTED.value, Visibility.MEMBERS.value]
    open_to_viewer = and_(Post.held.is_(None), Post.visibility.in_(allowed))
    if person is None:
        return and_(Post.deleted_at.is_(None), open_to_viewer)
    named = select(PostAudience.id).where(
        PostAudience.post_id == Post.id, PostAudience.actor_id == person.id).exists()
    return and_(Post.deleted_at.is_(None),
                or_(open_to_viewer, Post.author_id == person.id, named))


async def _entries(
    session: AsyncSession, viewer: Viewer, rows: Sequence[tuple[Post, Actor]],
    *, listing: bool, silenced: Silenced | None = None,
) -> list[Entry]:
    """Entries of thread starters (or any posts) the viewer may see, with their reply counts
    as the viewer may see them (every visible post below, at any depth)."""
    person = await actor_row(session, viewer)
    gate = await gate_for(session, viewer, [p for p, _ in rows])
    shown: list[tuple[Post, Actor]] = []
    for post, author in rows:
        if not (gate.in_listing(post.id) if listing else gate.sees(post.id)):
            continue
        if silenced is not None and not author.local and not viewer.is_member(
            gate.facts(post.id).group) and await silenced(author.domain):
            continue
        shown.append((post, author))
    roots = [p.id for p, _ in shown if p.thread_id == p.id]
    counts = await _thread_counts(session, viewer, roots)
    reacted = await _reactions(session, person, [p.id for p, _ in shown])
    locked = await _locked(session, [p for p, _ in shown])
    groups = await _groups(session, [p for p, _ in shown])
    return [
        Entry(
            post=post, author=author, mine=person is not None and post.author_id == person.id,
            can_reply=gate.may_reply(post.id) and not locked.get(post.id, False),
            liked="Like" in reacted.get(post.id, ()),
            disliked="Dislike" in reacted.get(post.id, ()),
            reply_count=counts.get(post.id, 0), group=groups.get(post.group_id or 0),
            locked=locked.get(post.id, False),
        )
        for post, author in shown
    ]


def _open_to_all() -> ColumnElement[bool]:
    """A post every viewer the gate lets in sees (can_view: not deleted, not held, public or
    unlisted), whoever they are."""
    return and_(Post.deleted_at.is_(None), Post.held.is_(None),
                Post.visibility.in_([v.value for v in Visibility if v.open_to_anyone]))


# Built once: an alias is new Columns each time (reference cycles, freed only by the
# collector, after every page).
_PARENT = aliased(Post)


async def _plain_counts(session: AsyncSession, thread_ids: list[int]) -> dict[int, int]:
    """Reply counts of the threads whose every post is open to all and answers a post of its
    own thread (or one not held here): there the gate sees every reply, for any viewer it
    lets in, so the count is a COUNT. Threads left out go through the gate post by post."""
    parent = _PARENT
    elsewhere = select(parent.id).where(
        parent.uri == Post.in_reply_to,
        or_(parent.thread_id.is_(None), parent.thread_id != Post.thread_id),
    ).exists()
    irregular = or_(~_open_to_all(), elsewhere)
    rows = await session.execute(
        select(Post.thread_id, func.sum(case((Post.id != Post.thread_id, 1), else_=0)),
               func.sum(case((irregular, 1), else_=0)))
        .where(Post.thread_id.in_(thread_ids)).group_by(Post.thread_id)
    )
    return {int(tid): int(replies) for tid, replies, odd in rows.all() if not odd}


async def _thread_counts(
    session: AsyncSession, viewer: Viewer, thread_ids: list[int]
) -> dict[int, int]:
    """Replies in each thread this viewer may see: each asked of the gate, as the thread
    page shows them, so "3 replies" always means three shown (threads where the gate
    would see them all are counted in SQL: a hot thread of a thousand replies is not loaded
    to be counted)."""
    if not thread_ids:
        return {}
    counts = {} if viewer.blocked else await _plain_counts(session, thread_ids)
    rest = [t for t in thread_ids if t not in counts]
    if not rest:
        return counts
    posts = (await session.execute(
        select(Post).options(*LIGHT)
        .where(Post.thread_id.in_(rest), Post.deleted_at.is_(None))
    )).scalars().all()
    gate = await gate_for(session, viewer, posts)
    for post in posts:
        if post.id != post.thread_id and post.thread_id is not None and gate.sees(post.id):
            counts[post.thread_id] = counts.get(post.thread_id, 0) + 1
    return counts


async def _locked(session: AsyncSession, posts: Sequence[Post]) -> dict[int, bool]:
    roots = {p.thread_id for p in posts if p.thread_id is not None and p.thread_id != p.id}
    locked_roots = set((await session.execute(
        select(Post.id).where(Post.id.in_(roots), Post.locked_at.is_not(None))
    )).scalars()) if roots else set()
    return {p.id: p.locked_at is not None if p.thread_id == p.id
            else p.thread_id in locked_roots for p in posts}


async def _groups(session: AsyncSession, posts: Sequence[Post]) -> dict[int, Actor]:
    ids = {p.group_id for p in posts if p.group_id is not None}
    if not ids:
        return {}
    return {a.id: a for a in (await session.execute(
        select(Actor).where(Actor.id.in_(ids)))).scalars()}


def _threads_of(condition: ColumnElement[bool]) -> Select[int]:
    """Ids only: the database sorts a group's thousands of threads as narrow rows, and
    `_page` loads the posts and authors of the one page shown."""
    return select(Post.id).where(condition, Post.thread_id == Post.id)


async def _page(
    session: AsyncSession, query: Select[int], page: int
) -> tuple[list[tuple[Post, Actor]], bool]:
    return await _load(session, list((await session.execute(
        query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    )).scalars()))


async def _load(
    session: AsyncSession, ids: list[int]
) -> tuple[list[tuple[Post, Actor]], bool]:
    """The posts and authors of a page's ids (PAGE_SIZE + 1 asked: one more means a next
    page)."""
    shown = ids[:PAGE_SIZE]
    if not shown:
        return [], len(ids) > PAGE_SIZE
    loaded = {post.id: (post, author) for post, author in (await session.execute(
        select(Post, Actor).options(*LIGHT).join(Actor, Actor.id == Post.author_id)
        .where(Post.id.in_(shown))
    )).all()}
    return [loaded[i] for i in shown if i in loaded], len(ids) > PAGE_SIZE


async def group_threads(
    session: AsyncSession, viewer: Viewer, group: Actor, *, sort: ThreadSort = ThreadSort.HOT,
    page: int = 1, silenced: Silenced | None = None, clock: Callable[[], float] = time.time,
) -> Listing[Entry]:
    """A group's threads, pinned first, then by `sort`."""
    person = await actor_row(session, viewer)
    candidates = _candidates(viewer, person, group)
    if sort is ThreadSort.HOT:
        # Lemmy-like: score over age squared (plain arithmetic, the same on both databases).
        hours = (clock() - Post.published) / 3600.0 + HOT_GRAVITY_HOURS
        score = Post.like_count + Post.reply_count + 1
        rows, more = await _page(session, _threads_of(
            and_(Post.group_id == group.id, candidates)
        ).order_by(Post.pinned_at.is_(None), (score / (hours * hours)).desc(), Post.id.desc()),
            page)
    else:
        rows, more = await _load(session, await _pinned_first(
            session, group, candidates, sort, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1))
    return Listing(await _entries(session, viewer, rows, listing=True, silenced=silenced),
                   page, more)


async def home_feed(session: AsyncSession, viewer: Viewer, *, page: int = 1) -> Listing[Entry]:
    """Threads in the groups the viewer belongs to, newest activity first."""
    uris = (viewer.member_of | viewer.moderator_of) - viewer.banned_from
    if not uris:
        return Listing([], page, False)
    ids = list((await session.execute(select(Actor.id).where(Actor.uri.in_(uris)))).scalars())
    person = await actor_row(session, viewer)
    # Moderators see held threads too: the gate sorts them out per group.
    candidates = Post.deleted_at.is_(None) if viewer.moderator_of else _candidates(
        viewer, person, None)
    rows, more = await _load(session, await _active_ids(
        session, ids, candidates, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1))
    return Listing(await _entries(session, viewer, rows, listing=True), page, more)


async def _pinned_first(
    session: AsyncSession, group: Actor, candidates: ColumnElement[bool], sort: ThreadSort,
    start: int, count: int,
) -> list[int]:
    """A group's threads for the "new" and "active" sorts: the pinned ones first, then the
    rest, each part in the sort's order (both parts read by index, not by sorting every
    thread of the group)."""
    pinned_rows = (await session.execute(
        select(Post.id, Post.published).where(
            Post.group_id == group.id, Post.pinned_at.is_not(None), Post.thread_id == Post.id,
            candidates)
    )).all()
    when = dict(pinned_rows)
    if sort is ThreadSort.ACTIVE and when:
        when.update((await session.execute(
            _last_activity().where(Post.thread_id.in_(list(when)))
        )).all())
    pinned = sorted(when, key=lambda t: (-when[t], -t))
    shown = pinned[start:start + count]
    if len(shown) < count:
        rest_start, rest_count = max(0, start - len(pinned)), count - len(shown)
        unpinned = and_(candidates, Post.pinned_at.is_(None))
        if sort is ThreadSort.ACTIVE:
            shown += await _active_ids(session, [group.id], unpinned, rest_start, rest_count)
        else:
            shown += (await session.execute(
                _threads_of(and_(Post.group_id == group.id, unpinned))
                .order_by(Post.published.desc(), Post.id.desc())
                .offset(rest_start).limit(rest_count)
            )).scalars()
    return shown


async def person_posts(
    session: AsyncSession, viewer: Viewer, person: Actor, *, page: int = 1,
) -> tuple[Listing[Entry], int]:
    """A person's posts the viewer may see, newest first, and how many there are in all.

    Held and refused posts show only to whom the gate shows them (the author, the group's
    moderators), so the count is of the same posts the pages list."""
    posts = (await session.execute(
        select(Post).options(*LIGHT)
        .where(Post.author_id == person.id, Post.deleted_at.is_(None))
        .order_by(Post.published.desc(), Post.id.desc()).limit(THREAD_LIMIT)
    )).scalars().all()
    gate = await gate_for(session, viewer, posts)
    visible = [p for p in posts if gate.sees(p.id)]
    start = (page - 1) * PAGE_SIZE
    rows = [(p, person) for p in visible[start:start + PAGE_SIZE]]
    entries = await _entries(session, viewer, rows, listing=False)
    for entry in entries:
        if entry.post.thread_id != entry.post.id:
            entry.reply_count = 0  # counts are per thread; a reply's own are on its page
    return Listing(entries, page, len(visible) > start + PAGE_SIZE), len(visible)


# -- one thread ---------------------------------------------------------------------------


async def thread(
    session: AsyncSession, viewer: Viewer, post: Post,
    cut: Callable[[Entry], None] | None = None,
) -> Entry | None:
    """`post` and the replies below it the viewer may see, as a tree (None if the viewer
    may not see `post`). Removed or deleted replies become place-holders, without their
    replies, for people who could have seen them. `cut` prunes the tree before its posts
    are loaded whole: only the posts it keeps are (a page of a long thread)."""
    root_id = post.thread_id or post.id
    # Rows alone, their few authors after: a thousand rows need not carry one author each.
    rows = [Skeleton._make(row) for row in (await session.execute(
        select(*SKELETON)
        .where(or_(Post.thread_id == root_id, Post.id == post.id))
        .order_by(Post.published, Post.id).limit(THREAD_LIMIT)
    )).all()]
    gate = await gate_for(session, viewer, rows)
    if not any(p.id == post.id for p in rows) or not gate.sees(post.id):
        return None
    authors = {a.id: a for a in (await session.execute(
        select(Actor).where(Actor.id.in_({p.author_id for p in rows}))
    )).scalars()}
    person = await actor_row(session, viewer)
    person_id = person.id if person is not None else None
    root = next((p for p in rows if p.id == root_id), None)
    locked = root is not None and root.locked_at is not None
    entries: dict[str, Entry] = {}
    parents: list[tuple[Entry, str]] = []  # in published order: parents before replies
    for item in rows:
        item_id = item.id
        if gate.sees(item_id):
            gone = None
        elif item.deleted_at is not None and gate.would_see(item_id):
            gone = "removed" if item.held == "removed" else "deleted"
        else:
            continue
        author = authors.get(item.author_id)
        if author is None:
            continue
        entry = Entry(
            post=cast(Post, item), author=author, gone=gone, mine=item.author_id == person_id,
            locked=locked,
        )  # post: its Skeleton, and can_reply, liked, disliked unknown until _fill
        entries[item.uri] = entry
        if item.in_reply_to is not None:
            parents.append((entry, item.in_reply_to))
    top = entries.get(post.uri)
    if top is None:
        return None
    for entry, parent_uri in parents:
        parent = entries.get(parent_uri)
        if entry is not top and parent is not None and parent.gone is None:
            parent.children.append(entry)
    _measure(top)
    if cut is not None:
        cut(top)
    await _fill(session, gate, person, top)
    return top


async def _fill(session: AsyncSession, gate: Gate, person: Actor | None, top: Entry) -> None:
    """The tree's posts loaded whole (what the page shows of them), in place of their
    Skeletons, with whether the viewer may reply and the person's reactions."""
    drawn: list[Entry] = []
    stack = [top]
    while stack:
        entry = stack.pop()
        drawn.append(entry)
        stack.extend(entry.children)
    ids = [e.post.id for e in drawn]
    posts = {p.id: p for p in (await session.execute(
        select(Post).options(*LIGHT).where(Post.id.in_(ids))
    )).scalars()}
    reacted = await _reactions(session, person, ids)
    for entry in drawn:
        entry.post = posts[entry.post.id]
        entry.can_reply = entry.gone is None and not entry.locked and gate.may_reply(
            entry.post.id)
        kinds = reacted.get(entry.post.id, ())
        entry.liked, entry.disliked = "Like" in kinds, "Dislike" in kinds


async def thread_page(
    session: AsyncSession, viewer: Viewer, post: Post, *, after: int | None = None,
    budget: int = REPLIES_PER_PAGE, top_limit: int = TOP_PER_PAGE,
) -> ThreadPage | None:
    """One page of `thread`: `post` and, of its direct replies after the one with id
    `after`, as many as `budget` and `top_limit` allow, with theirs (see `_bound`)."""
    newest = 0

    def cut(top: Entry) -> None:
        nonlocal newest
        newest = _newest(top)
        if after is not None:
            at = next((i for i, c in enumerate(top.children) if c.post.id == after), None)
            top.children = (top.children[at + 1:] if at is not None
                            else [c for c in top.children if c.post.id > after])
        _bound(top, budget, top_limit)

    top = await thread(session, viewer, post, cut)
    return ThreadPage(top, newest, after) if top is not None else None


def _newest(top: Entry) -> int:
    newest, stack = top.post.id, [top]
    while stack:
        entry = stack.pop()
        newest = max(newest, entry.post.id)
        stack.extend(entry.children)
    return newest


def _bound(top: Entry, budget: int, top_limit: int) -> None:
    """Keep at most `budget` replies below `top`, breadth first (every level of the
    conversation before the depths of its first branch), at most `top_limit` of them direct.
    Each post keeps a prefix of its replies; the rest are counted (what the viewer may see,
    as `reply_count` is) in `more`, and `more_after` is the last one kept: the link to the
    post's own page starts after it, so following every link reaches each reply once."""
    drawn = 0
    queue = deque([top])
    while queue:
        entry = queue.popleft()
        room = budget - drawn
        if entry is top:
            room = min(room, top_limit)
        kept = entry.children[:max(0, room)]
        drawn += len(kept)
        queue.extend(kept)
        cut = entry.children[len(kept):]
        if cut:
            entry.more = sum(1 + c.reply_count for c in cut if c.gone is None)
            entry.more_after = kept[-1].post.id if kept else None
            entry.children = kept


async def entry_of(session: AsyncSession, viewer: Viewer, post: Post) -> Entry | None:
    """One post as the thread page shows it to this viewer (what its actions need), or
    None if the gate does not let the viewer see it: a post added to an open page live."""
    author = await session.get(Actor, post.author_id)
    if author is None:
        return None
    found = await _entries(session, viewer, [(post, author)], listing=False)
    return found[0] if found else None


def _measure(top: Entry) -> None:
    """Depths, visible reply counts, and where nesting stops (iteratively: a chain of
    thousands of replies must not exhaust the stack)."""
    order: list[Entry] = []
    stack = [top]
    seen: set[int] = set()
    while stack:
        entry = stack.pop()
        if entry.post.id in seen:
            continue
        seen.add(entry.post.id)
        order.append(entry)
        for child in entry.children:
            child.depth = entry.depth + 1
        stack.extend(reversed(entry.children))
    for entry in reversed(order):
        entry.reply_count = sum(1 + c.reply_count for c in entry.children if c.gone is None)
        if entry.depth >= NEST_LIMIT and entry.children:
            entry.more = entry.reply_count
            entry.children = []


def count_entries(entry: Entry) -> int:
    """Visible posts in a tree, its top included (for tests and the benchmark)."""
    total, stack = 0, [entry]
    while stack:
        current = stack.pop()
        total += current.gone is None
        stack.extend(current.children)
    return total


# -- the group's sidebar and looking people and groups up -------------------------------------


async def sidebar(session: AsyncSession, group: Actor, person: Actor | None) -> Sidebar:
    members = int((await session.execute(
        select(func.count()).select_from(Follow)
        .where(Follow.target_id == group.id, Follow.state == "accepted")
    )).scalar_one())
    return Sidebar(
        group=group, config=await session.get(Group, group.id), members=members,
        moderators=await moderators(session, group),
        membership=await membership(session, group, person),
    )


class Resolver(Protocol):
    """What looking up needs of federation.resolve.ActorResolver (passed in: groups sits
    below federation)."""

    async def actor(self, session: AsyncSession, uri: str, *, refresh: bool = False
                    ) -> Actor: ...

    async def resolve_handle(self, session: AsyncSession, handle: str) -> Actor: ...


REFRESH_AFTER = 3600.0


async def lookup(
    session: AsyncSession, resolver: Resolver, urls: Urls, domain: str, query: str,
    *, remote: bool, clock: Callable[[], float] = time.time,
) -> Actor:
    """An actor by `@name@host`, `name@host`, a local `name`, or its URL. Names of this
    server are found locally; others are fetched (and stored) only when `remote` is allowed,
    and a known actor is refreshed when older than an hour (kept as it is if its server
    does not answer). Raises FediError with a reason a person can act on."""
    text = query.strip()
    if not text or len(text) > 2048 or any(c.isspace() for c in text):
        raise ValidationError("give an address like @name@example.com or a https:// link")
    if text.startswith(("http://", "https://")):
        local = urls.is_local(text)
        where = Actor.uri == text.rstrip("/")
    else:
        name, _, host = text.removeprefix("@").partition("@")
        if not name or (host and "." not in host and ":" not in host):
            raise ValidationError(f"{text!r} is not an address like @name@example.com")
        local = not host or host.lower() == domain.lower()
        where = and_(Actor.username == name, Actor.local) if local else and_(
            func.lower(Actor.username) == name.lower(), Actor.domain == host.lower())
    found = (await session.execute(
        select(Actor).where(where, Actor.type.in_(("Person", "Group"))).limit(1)
    )).scalar_one_or_none()
    if local:
        if found is None:
            raise ValidationError(f"there is nobody called {text!r} on this server")
        return found
    if found is not None and clock() - found.fetched_at < REFRESH_AFTER:
        return found
    if not remote:
        raise ValidationError("log in to look up people and groups on other servers")
    try:
        if text.startswith(("http://", "https://")):
            fetched = await resolver.actor(session, text, refresh=True)
        else:
            fetched = await resolver.resolve_handle(session, "@" + text.removeprefix("@"))
    except FetchError as exc:
        if found is not None:
            return found
        raise FetchError(f"could not look up {text}: {exc.reason}") from None
    except FediError:
        raise
    if fetched.type not in ("Person", "Group"):
        raise ValidationError(f"{text} is a {fetched.type}, not a person or a group")
    return fetched


