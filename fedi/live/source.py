"""Where events come from: the transaction that stores a post, deletes one, or records a
notification.

`post_stored(session, post)` only notes the post. What happens next is decided when the
transaction commits, because the storing code may still hold the post for a moderator after
the call: a post held or deleted by then makes no event. Deletions and edits (a post's
`deleted_at` or `updated` set on the object, not by a bulk UPDATE) and new Notification
rows are noticed at flush, so no use case has to remember to announce them.

- PostgreSQL: `pg_notify` runs just before COMMIT, in the same transaction, so the event is
  delivered at commit and vanishes with a rollback; every process LISTENing hears it
  (fedi serve's processes, whichever process stored the post: serve, worker or CLI).
- SQLite (one process): the events go to the hub of the session's sessionmaker after the
  commit succeeded (`attach`); a session without a hub (the CLI) publishes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, Text, bindparam, event, inspect, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, UOWTransaction

from fedi.live.events import (
    CHANNEL,
    DeleteEvent,
    EditEvent,
    LiveEvent,
    NoticeEvent,
    PostEvent,
)
from fedi.live.hub import Hub
from fedi.store.models import Notification, Post

_NOTED = "fedi.live.noted"  # posts stored in this transaction
_FLUSHED = "fedi.live.flushed"  # deletions and notifications seen at flush
_READY = "fedi.live.ready"  # their events, once the commit is under way
_HUB = "fedi.live.hub"


def attach(sessionmaker: async_sessionmaker[Any], hub: Hub) -> None:
    """Sessions of this sessionmaker publish to this hub after commit (SQLite)."""
    sessionmaker.configure(info={_HUB: hub})


def post_stored(session: AsyncSession | Session, post: Any) -> None:
    """Note a post stored in this transaction (a Post with its id and thread_id set)."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    sync.info.setdefault(_NOTED, []).append(post)


def _events(session: Session) -> list[LiveEvent]:
    noted = session.info.pop(_NOTED, [])
    found: list[LiveEvent] = [
        PostEvent(post_id=p.id, thread_id=p.thread_id or p.id, group_id=p.group_id)
        for p in noted if p.held is None and p.deleted_at is None and p.id is not None
    ]
    flushed: list[LiveEvent] = session.info.pop(_FLUSHED, [])
    return found + flushed


def _newly_set(post: Post, name: str) -> bool:
    history = inspect(post).attrs[name].history
    return any(v is not None for v in history.added) and (
        name == "updated" or not any(v is not None for v in history.deleted))


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    """Still the pre-flush view here: `new` and attribute histories say what was written."""
    found: list[LiveEvent] = [
        NoticeEvent(notice_id=row.id, recipient_id=row.recipient_id)
        for row in session.new if isinstance(row, Notification) and row.id is not None
    ]
    for post in session.dirty:
        if not isinstance(post, Post) or post.id is None:
            continue
        if _newly_set(post, "deleted_at"):
            found.append(DeleteEvent(post_id=post.id, group_id=post.group_id))
        elif _newly_set(post, "updated") and post.deleted_at is None and post.held is None:
            found.append(EditEvent(post_id=post.id, group_id=post.group_id,
                                   edited=post.updated or 0.0))
    if found:
        session.info.setdefault(_FLUSHED, []).extend(found)


_NOTIFY_ALL = text(
    # A function scan of unnest yields the array's elements in order, and pg_notify runs
    # once per row as it comes.
    "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS TEXT[])) AS payload"
).bindparams(bindparam("payloads", type_=ARRAY(Text)))


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    # SQLAlchemy sends the commit and rollback events for savepoints too (the inbox
    # processor runs each item in one): only the outermost transaction's end decides, or
    # a post would be announced before it is committed, and one item's rollback would
    # drop the events of the items before it.
    if session.in_nested_transaction():
        return
    if session.new or session.dirty:
        session.flush()  # commit flushes after this hook: its rows' events must be seen first
    if _NOTED not in session.info and _FLUSHED not in session.info:
        return
    events = _events(session)
    if not events:
        return
    if session.get_bind().dialect.name == "postgresql":
        # One statement for all of them, in their order: a batch of 100 new posts paid a
        # round trip each (bench.processing).
        session.execute(_NOTIFY_ALL, {"channel": CHANNEL,
                                      "payloads": [item.encode() for item in events]})
    else:
        session.info[_READY] = events


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    events: list[LiveEvent] = session.info.pop(_READY, [])
    hub = session.info.get(_HUB)
    if isinstance(hub, Hub):
        for item in events:
            hub.publish(item)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if session.in_nested_transaction():
        # The inbox processor (the one user of savepoints) drops a rolled-back item's notes
        # itself; a stray one would be harmless: every event's post is looked up and gated
        # again before anything is sent.
        return
    session.info.pop(_NOTED, None)
    session.info.pop(_FLUSHED, None)
    session.info.pop(_READY, None)
