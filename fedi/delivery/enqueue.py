"""Transactional outbox: delivery rows are added in the caller's transaction.

Nothing is sent here; the caller commits the change and its deliveries together, so a crash
either loses both or neither.

Each row carries an order key, a digest of (the object the activity is about, the inbox): the
worker sends a row only when no earlier row with its key is pending, so a Create reaches an
inbox before its Update and Delete, and an Undo after what it undoes, across retries and
worker processes. Unrelated activities have different keys and go in parallel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import host_of
from fedi.store.models import Actor, Delivery, OutboundActivity, now

_ABOUT_THEIR_OBJECT = frozenset({"Create", "Update", "Delete"})
_WRAPPERS = frozenset({"Announce", "Undo"})


def object_key(activity: Any) -> str | None:
    """What an activity is about, for ordering: the object of a Create, Update or Delete; what
    an Announce (a group's relay) or an Undo wraps; else the activity itself (so a Like and
    its Undo share a key)."""
    if isinstance(activity, str):
        return activity
    if not isinstance(activity, dict):
        return None
    kind, inner = activity.get("type"), activity.get("object")
    if kind in _ABOUT_THEIR_OBJECT:
        return _id(inner) or _id(activity)
    if kind in _WRAPPERS and isinstance(inner, dict) and "object" in inner:
        return object_key(inner)
    if kind == "Undo" and isinstance(inner, str):
        return inner
    return _id(activity)


def _id(value: Any) -> str | None:
    found = value.get("id") if isinstance(value, dict) else value
    return found if isinstance(found, str) and found else None


def order_key(about: str | None, inbox: str) -> str | None:
    if about is None:
        return None
    return hashlib.blake2b(f"{about} {inbox}".encode(), digest_size=16).hexdigest()


async def enqueue(
    session: AsyncSession, signer: Actor, activity: dict[str, Any], inboxes: Iterable[str]
) -> OutboundActivity:
    record = OutboundActivity(uri=activity["id"], actor_id=signer.id, body=json.dumps(activity))
    session.add(record)
    await session.flush()
    created = now()
    # The host in its one spelling (SECURITY 22): `[::ffff:127.0.0.1]:8000` and
    # `127.0.0.1:8000` share one backoff, breaker and gone mark.
    # Due at once (0, not "now"): a worker whose wall clock is behind this one's (a clock
    # jump, another machine) still sends new rows straight away.
    about = object_key(activity)
    rows = [
        {"activity_id": record.id, "inbox_url": inbox, "host": host_of(inbox),
         "state": "pending", "attempts": 0, "next_attempt_at": 0.0, "claimed_until": 0.0,
         "created_at": created, "order_key": order_key(about, inbox)}
        for inbox in dict.fromkeys(inboxes)
    ]
    if rows:
        # One executemany on the table, not the ORM's bulk insert (which handles each row in
        # Python again) nor an ORM object per row: a big group has thousands.
        await session.execute(insert(Delivery.__table__), rows)  # type: ignore[arg-type]
    return record
