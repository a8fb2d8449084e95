"""What a streaming client subscribes to, and which live events reach it as which frames.

A stream is a name (`user`, `public`, `public:local`, `public:remote`, `hashtag`,
`hashtag:local`, `user:notification`) and, for hashtags, a tag. Every event is decided for
one watcher (a token's person) at the moment it happens:

- a post (`update`): the privacy gate (`fedi.privacy.access.can_view` on the post's facts)
  for the person's viewer as it is now, then the stream's own rule, the same as the
  timelines': user is the person's home (groups joined, people followed, their own posts),
  public and hashtag carry listed public posts only; blocked and muted authors stay out;
- an edit (`status.update`, the Status as it is now): as for a new post;
- a deletion (`delete`, the id): only to whom the post was visible before it went;
- a notification (`notification`): only to its recipient, made as GET /api/v1/notifications
  makes it (`fedi.api.notifications.Shown`: through the gate, blocks and mutes left out).

The work that does not depend on the viewer (loading the post, its facts, rendering its
Status) is done once per event per process (`Shared`), not once per connection.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi.accounts import oauth
from fedi.api.entities import Presenter
from fedi.api.notifications import MASTODON_TYPE, Shown
from fedi.api.timelines import left_out, tagged
from fedi.groups.viewers import facts_for, viewer_for, viewers_for
from fedi.live.events import DeleteEvent, EditEvent, LiveEvent, NoticeEvent, PostEvent
from fedi.moderation.policy import DomainPolicy
from fedi.privacy.access import ANONYMOUS, PostFacts, Viewer, can_view, listed
from fedi.store.models import Actor, Follow, Notification, PersonRelation, Post

TAG = re.compile(r"^\w{1,100}$")
STATUS_STREAMS = frozenset({"user", "public", "public:local", "public:remote", "hashtag",
                            "hashtag:local"})
NOTICE_STREAMS = frozenset({"user", "user:notification"})
KNOWN = STATUS_STREAMS | NOTICE_STREAMS | {"public:media", "public:local:media",
                                           "public:remote:media"}
CACHED_EVENTS = 256

class StreamError(Exception):
    """A subscription that cannot be: an unknown stream, a hashtag stream without a tag, a
    token without the scope."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Stream:
    name: str
    tag: str | None = None

    @property
    def scope(self) -> str:
        return "read:notifications" if self.name == "user:notification" else "read:statuses"

    def wire(self) -> list[str]:
        return [self.name, self.tag] if self.tag is not None else [self.name]

    @property
    def statuses(self) -> bool:
        return self.name in STATUS_STREAMS


def parse_stream(name: str | None, tag: str | None, grant: oauth.Grant) -> Stream:
    """The stream a client names, checked against its token's scopes."""
    if not name:
        raise StreamError("Say which stream: user, public, public:local, public:remote, "
                          "hashtag (with tag), hashtag:local or user:notification")
    if name not in KNOWN:
        raise StreamError(f"Unknown stream type {name[:40]!r}")
    found = Stream(name)
    if name.startswith("hashtag"):
        cleaned = (tag or "").strip().lstrip("#").lower()
        if not TAG.match(cleaned):
            raise StreamError("A hashtag stream needs a tag: letters, digits and underscores")
        found = Stream(name, cleaned)
    if not grant.allows(found.scope):
        raise StreamError(f"This stream is outside the authorized scopes (needs "
                          f"{found.scope})", 403)
    return found


@dataclass(frozen=True)
class Frame:
    """One event for a client: which of its streams it belongs to, and the payload text."""

    stream: list[str]
    event: str
    payload: str

    def json(self) -> str:
        return _frame_text(tuple(self.stream), self.event, self.payload)


@functools.lru_cache(maxsize=CACHED_EVENTS)
def _frame_text(stream: tuple[str, ...], event: str, payload: str) -> str:
    """Encoded once for the many clients an event goes to (the payload is one shared str)."""
    return json.dumps({"stream": list(stream), "event": event, "payload": payload},
                      separators=(",", ":"))


@dataclass
class PostNews:
    """A post as every watcher of this process needs it, loaded once per event."""

    post: Post
    facts: PostFacts
    silenced: bool  # a remote author from a server kept out of public listings
    rendered: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Shared:
    """One process's viewer-independent work, kept for the last few events."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], base_url: str,
                 policy: DomainPolicy) -> None:
        self.sessionmaker = sessionmaker
        self.base_url = base_url
        self.policy = policy
        self._posts: OrderedDict[tuple[str, int, float], asyncio.Task[PostNews | None]] = (
            OrderedDict())
        self.homes = Homes(sessionmaker)

    def _memo(self, key: tuple[str, int, float], load: Callable[[], Awaitable[PostNews | None]]
              ) -> asyncio.Task[PostNews | None]:
        task = self._posts.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._posts[key] = task
            while len(self._posts) > CACHED_EVENTS:
                self._posts.popitem(last=False)
        return task

    async def post(self, post_id: int, edited: float = 0.0) -> PostNews | None:
        """The post as it is after its publication (or after the edit made at `edited`)."""
        return await asyncio.shield(self._memo(
            ("post", post_id, edited), lambda: self._load(post_id)))

    async def deleted(self, post_id: int) -> PostNews | None:
        return await asyncio.shield(self._memo(
            ("delete", post_id, 0.0), lambda: self._load(post_id, deleted=True)))

    async def _load(self, post_id: int, *, deleted: bool = False) -> PostNews | None:
        async with self.sessionmaker() as session:
            post = await session.get(Post, post_id)
            if post is None or (post.deleted_at is not None) != deleted:
                return None
            facts = await facts_for(session, post)
            silenced = False
            if not post.local:
                author = await session.get(Actor, post.author_id)
                silenced = author is not None and await self.policy.is_silenced(author.domain)
        # Who learns of a deletion: whom the post was shown to before it went.
        return PostNews(post, replace(facts, deleted=False) if deleted else facts, silenced)

    async def status(self, news: PostNews, viewer: Viewer) -> str | None:
        """The post's Status as JSON text, rendered once (as Mastodon's streaming renders it:
        for no one in particular, so `favourited` and the like are false)."""
        async with news.lock:
            if news.rendered is None:
                async with self.sessionmaker() as session:
                    shown = await Presenter(session, self.base_url, viewer, None).status(
                        news.post)
                if shown is None:
                    return None
                news.rendered = json.dumps(shown, separators=(",", ":"))
            return news.rendered


@dataclass(frozen=True)
class Home:
    """What a person's home is made of, and who they are to the gate, read after the event."""

    viewer: Viewer
    followed: frozenset[int]
    hidden: frozenset[int]  # blocked or muted accounts


class Homes:
    """Every waiting watcher's Home, loaded for all of them at once: when an event comes,
    a thousand clients cost a few queries, not a few thousand. A request made while a load
    runs waits for the next one, so no watcher gets a Home read before it asked."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._waiting: dict[int, tuple[Actor, list[asyncio.Future[Home]]]] = {}
        self._loading: asyncio.Task[None] | None = None

    async def of(self, person: Actor) -> Home:
        future: asyncio.Future[Home] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(person.id, (person, []))[1].append(future)
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self._load_all())
        return await future

    async def _load_all(self) -> None:
        while self._waiting:
            await asyncio.sleep(0)  # the other watchers woken by the same event ask too
            batch, self._waiting = self._waiting, {}
            try:
                homes = await self._load([person for person, _ in batch.values()])
            except Exception as exc:
                for _, futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for person_id, (_, futures) in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(homes[person_id])

    async def _load(self, people: list[Actor]) -> dict[int, Home]:
        ids = [p.id for p in people]
        followed: dict[int, set[int]] = {}
        hidden: dict[int, set[int]] = {}
        async with self.sessionmaker() as session:
            viewers = await viewers_for(session, people)
            for follower, target in (await session.execute(
                    select(Follow.follower_id, Follow.target_id)
                    .join(Actor, Actor.id == Follow.target_id).where(
                        Follow.follower_id.in_(ids), Follow.state == "accepted",
                        Actor.type != "Group"))).all():
                followed.setdefault(follower, set()).add(target)
            # The accounts each blocks or mutes (fedi.api.timelines.left_out, for many).
            for actor_id, target in (await session.execute(
                    select(PersonRelation.actor_id, PersonRelation.target_id)
                    .where(PersonRelation.actor_id.in_(ids)))).all():
                hidden.setdefault(actor_id, set()).add(target)
        return {i: Home(viewers[i], frozenset(followed.get(i, ())),
                        frozenset(hidden.get(i, ()))) for i in ids}


class Watcher:
    """One client's token and person, and the streams it is subscribed to."""

    def __init__(self, shared: Shared, grant: oauth.Grant, person: Actor) -> None:
        self.shared = shared
        self.grant = grant
        self.person = person
        self.streams: set[Stream] = set()

    def subscribe(self, stream: Stream) -> None:
        self.streams.add(stream)

    def unsubscribe(self, stream: Stream) -> None:
        self.streams.discard(stream)

    async def frames(self, event: LiveEvent) -> list[Frame]:
        if isinstance(event, PostEvent):
            return await self._update(event.post_id)
        if isinstance(event, EditEvent):
            return await self._update(event.post_id, event.edited, "status.update")
        if isinstance(event, DeleteEvent):
            return await self._delete(event)
        return await self._notification(event)

    def _belongs(self, stream: Stream, news: PostNews, home: Home) -> bool:
        post = news.post
        if stream.name == "user":
            return (post.author_id == self.person.id or post.author_id in home.followed
                    or (home.viewer.is_member(news.facts.group)
                        or home.viewer.moderates(news.facts.group)))
        if stream.name.endswith(":media") or not listed(news.facts) or news.silenced:
            return False
        if stream.name.endswith(":local") and not post.local:
            return False
        if stream.name == "public:remote" and post.local:
            return False
        return stream.tag is None or tagged(post, stream.tag)

    async def _update(self, post_id: int, edited: float = 0.0, name: str = "update"
                      ) -> list[Frame]:
        streams = [s for s in self.streams if s.statuses]
        if not streams:
            return []
        news = await self.shared.post(post_id, edited)
        if news is None:
            return []
        home = await self.shared.homes.of(self.person)
        if not can_view(news.facts, home.viewer) or news.post.author_id in home.hidden:
            return []
        if news.post.held is not None and news.post.author_id != self.person.id:
            return []  # moderators find held posts in their queue, not in timelines
        matched = [s for s in streams if self._belongs(s, news, home)]
        if not matched:
            return []
        payload = await self.shared.status(news, home.viewer)
        return [] if payload is None else [Frame(s.wire(), name, payload) for s in matched]

    async def _delete(self, event: DeleteEvent) -> list[Frame]:
        streams = [s for s in self.streams if s.statuses]
        if not streams:
            return []
        news = await self.shared.deleted(event.post_id)
        if news is None:
            return []
        if not can_view(news.facts, ANONYMOUS) and not can_view(
                news.facts, (await self.shared.homes.of(self.person)).viewer):
            return []
        return [Frame(s.wire(), "delete", str(event.post_id)) for s in streams]

    async def _notification(self, event: NoticeEvent) -> list[Frame]:
        if event.recipient_id != self.person.id or not self.grant.allows("read:notifications"):
            return []
        streams = [s for s in self.streams if s.name in NOTICE_STREAMS]
        if not streams:
            return []
        async with self.shared.sessionmaker() as session:
            row = await session.get(Notification, event.notice_id)
            if row is None or row.recipient_id != self.person.id or row.kind not in (
                    MASTODON_TYPE):  # fedi's own kinds only come to those who ask (types[])
                return []
            viewer = await viewer_for(session, self.person.uri)
            shown = Shown(session, Presenter(session, self.shared.base_url, viewer, self.person),
                          await left_out(session, self.person, notifications=True))
            entities = await shown.entities(await shown.keep([row]))
        if not entities:
            return []
        payload = json.dumps(entities[0], separators=(",", ":"))
        return [Frame(s.wire(), "notification", payload) for s in streams]
