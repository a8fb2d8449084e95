"""Transactional outbox: delivery rows are added in the caller's transaction.

Nothing is sent here; the caller commits the change and its deliveries together, so a crash
either loses both or neither.

Each row carries an order key, a digest of (the object the activity is about, the inbox): the
worker sends a row only when no earlier row with its key is pending, so a Create reaches an
inbox before its Update and Delete, and an Undo after what it undoes, across retries and
worker processes. Unrelated activities have different keys and go in parallel.

A row for a host the breaker has paused is born due at the end of the pause, not now: with
1,000 dead member servers every relay adds 1,000 rows the worker cannot send, and each claim
walks every due row (issue 13 item 9: a healthy server must not wait behind them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import host_of
from fedi.store.memo import remembered
from fedi.store.models import Actor, Delivery, Host, OutboundActivity, now

_OUTBOX = cast(Table, OutboundActivity.__table__)
_STORE_ACTIVITY = insert(_OUTBOX).returning(_OUTBOX.c.id)
_STORE_DELIVERIES = insert(cast(Table, Delivery.__table__))
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


async def paused_hosts(session: AsyncSession) -> dict[str, float]:
    """Hosts the breaker has paused (or ever paused), and until when. `hosts` holds only hosts
    that failed, so this is small; read once per inbox batch."""
    async def load() -> dict[str, float]:
        found = await session.execute(
            select(Host.host, Host.down_until).where(Host.down_until > 0))
        return {host: until for host, until in found.all()}

    return await remembered(session, "paused hosts", frozenset({"hosts"}), load)


async def enqueue(
    session: AsyncSession, signer: Actor, activity: dict[str, Any], inboxes: Iterable[str]
) -> int:
    """Store `activity` in the outbox and a delivery row per inbox; the outbox row's id."""
    created = now()
    # A Core INSERT … RETURNING built once, not an ORM object and a flush: every relayed
    # post and reaction stores one (bench.processing).
    record_id: int = (await session.execute(_STORE_ACTIVITY, {
        "uri": activity["id"], "actor_id": signer.id, "body": json.dumps(activity),
        "created_at": created,
    })).scalar_one()
    # The host in its one spelling (SECURITY 22): `[::ffff:127.0.0.1]:8000` and
    # `127.0.0.1:8000` share one backoff, breaker and gone mark.
    # Due at once (0, not "now"): a worker whose wall clock is behind this one's (a clock
    # jump, another machine) still sends new rows straight away.
    about = object_key(activity)
    paused = await paused_hosts(session)
    rows = []
    for inbox in dict.fromkeys(inboxes):
        host = host_of(inbox)
        until = paused.get(host, 0.0)
        rows.append({
            "activity_id": record_id, "inbox_url": inbox, "host": host, "state": "pending",
            "attempts": 0, "next_attempt_at": until if until > created else 0.0,
            "claimed_until": 0.0, "created_at": created, "order_key": order_key(about, inbox),
        })
    if rows:
        # One executemany on the table, not the ORM's bulk insert (which handles each row in
        # Python again) nor an ORM object per row: a big group has thousands.
        await session.execute(_STORE_DELIVERIES, rows)
    return record_id
