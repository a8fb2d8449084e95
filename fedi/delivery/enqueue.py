"""Transactional outbox: delivery rows are added in the caller's transaction.

Nothing is sent here; the caller commits the change and its deliveries together, so a crash
either loses both or neither.

Each row carries an order key for (the object the activity is about, the inbox): the worker
sends a row only when no earlier row with its key is pending, so a Create reaches an inbox
before its Update and Delete, and an Undo after what it undoes, across retries and worker
processes. Unrelated activities have different keys and go in parallel. The key is a digest
of the object followed by a digest of the inbox, so an activity's rows sit side by side in the
key's index: a relay to 99 servers writes a few index pages, not 99 scattered ones.

The rows go in with the least work per row each database allows: on SQLite the driver's own
executemany of plain tuples, on PostgreSQL a binary COPY. SQLAlchemy's executemany of parameter
dicts handled every row in Python again, and cost more than SQLite's writing them (issue 13
item 8: a relay to 99 servers per processed post); an `INSERT … SELECT FROM unnest(…)` of
arrays cost the driver three times the CPU of COPY's records, and the database a fifth more. A
COPY stores its rows in the order given, so ids follow the order they were queued in. In an
inbox batch that defers writes, every activity's rows wait for the batch's end and go in
together, in the order they were queued, in one write: a round trip per relayed post less, and
the database inserts 9,900 rows at once instead of 99 a hundred times. On PostgreSQL the
activities wait with them, their ids taken ahead from the sequence (fedi.store.reserved_ids).
Code that reads or changes queued rows in such a batch calls `queued_written` first.

A row for a host the breaker has paused is born due at the end of the pause, not now: with
1,000 dead member servers every relay adds 1,000 rows the worker cannot send, and each claim
walks every due row (issue 13 item 9: a healthy server must not wait behind them).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import host_of
from fedi.delivery import wakeup
from fedi.store.memo import memo_of, remembered
from fedi.store.models import Actor, Host, OutboundActivity, now
from fedi.store.reserved_ids import next_id

_OUTBOX = cast(Table, OutboundActivity.__table__)
_STORE_ACTIVITY = insert(_OUTBOX).returning(_OUTBOX.c.id)
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
    return order_keys(about, [inbox])[0]


def order_keys(about: str | None, inboxes: list[str]) -> list[str | None]:
    """The order key of each inbox's row (None for an activity about nothing: no order)."""
    if about is None:
        return [None] * len(inboxes)
    head = _digest(about)  # once for all of an activity's rows
    return [head + _inbox_digest(inbox) for inbox in inboxes]


def _digest(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=8).hexdigest()


# Per inbox URL, once: a group relays to the same inboxes with every post.
_inbox_digest = functools.lru_cache(maxsize=16384)(_digest)
_host_of = functools.lru_cache(maxsize=16384)(host_of)

# A row: (activity_id, inbox_url, host, next_attempt_at, order_key, created_at).
Row = tuple[int, str, str, float, "str | None", float]
_SQLITE_ROWS = (
    "INSERT INTO deliveries (activity_id, inbox_url, host, next_attempt_at, order_key,"
    " created_at, state, attempts, claimed_until) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, 0.0)"
)
_COPY_COLUMNS = ("activity_id", "inbox_url", "host", "next_attempt_at", "order_key",
                 "created_at", "state", "attempts", "claimed_until")
_NEW = ("pending", 0, 0.0)  # state, attempts, claimed_until
_QUEUED = "fedi.delivery.rows"
# Rows a batch holds back before it writes them anyway: 100 posts relayed to 1,000 member
# servers would otherwise hold 100,000 (about 25 MB) until the batch ends (issue 13 item 9).
MOST_ROWS_HELD = 10_000


async def _write_rows(session: AsyncSession, rows: list[Row]) -> None:
    connection = await session.connection()
    if session.get_bind().dialect.name != "postgresql":
        await connection.exec_driver_sql(_SQLITE_ROWS, rows)
        return
    driver: Any = (await connection.get_raw_connection()).driver_connection
    await driver.copy_records_to_table("deliveries", columns=_COPY_COLUMNS,
                                       records=[row + _NEW for row in rows])
    memo = memo_of(session)
    if memo is not None:
        memo.saw("INSERT INTO deliveries")  # what the statement hooks would have seen


async def _write_queued(session: AsyncSession, state: dict[str, Any]) -> None:
    """What a batch held back: its activities (with the ids taken ahead, then those for
    nobody, which get theirs here), then the rows."""
    for kind in ("activities", "for nobody"):
        if state.get(kind):
            await session.execute(_STORE_ACTIVITIES, state[kind])
    if state.get("rows"):
        await _write_rows(session, state["rows"])


def _held(session: AsyncSession) -> dict[str, Any] | None:
    """What an inbox batch that defers writes holds back for its end; None elsewhere."""
    memo = memo_of(session)
    if memo is None or not memo.defers_writes:
        return None
    return memo.deferred(_QUEUED, _write_queued)


async def queued_written(session: AsyncSession) -> None:
    """Before a statement that reads or changes queued deliveries: the rows an inbox batch
    holds back for its end are written now, so it finds them."""
    memo = memo_of(session)
    if memo is not None:
        await memo.write_now(session, _QUEUED)


_STORE_ACTIVITIES = insert(_OUTBOX)


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
) -> int | None:
    """Store `activity` in the outbox and a delivery row per inbox; the outbox row's id, or
    None when an inbox batch stores it at its end (an activity for nobody)."""
    created = now()
    row = {"uri": activity["id"], "actor_id": signer.id, "body": json.dumps(activity),
           "created_at": created}
    targets = list(dict.fromkeys(inboxes))
    held = _held(session)
    if held is not None and not targets:
        # An activity for nobody (a relayed Like when no member server takes votes) goes in
        # with the batch's others at its end, not a round trip each. Nothing in the batch
        # reads it back: only delivery rows refer to an outbox row. A later id than its
        # neighbours is the only sign.
        held.setdefault("for nobody", []).append(row)
        return None
    record_id = await next_id(session, "outbound_activities") if held is not None else None
    if record_id is None:
        # A Core INSERT … RETURNING built once, not an ORM object and a flush: every relayed
        # post and reaction stores one (bench.processing).
        record_id = int((await session.execute(_STORE_ACTIVITY, row)).scalar_one())
        if not targets:
            return record_id
    else:
        # Its id taken ahead (PostgreSQL): it waits for the batch's end with its rows.
        assert held is not None
        held.setdefault("activities", []).append({**row, "id": record_id})
    # The host in its one spelling (SECURITY 22): `[::ffff:127.0.0.1]:8000` and
    # `127.0.0.1:8000` share one backoff, breaker and gone mark.
    hosts = [_host_of(inbox) for inbox in targets]
    # Due at once (0, not "now"): a worker whose wall clock is behind this one's (a clock
    # jump, another machine) still sends new rows straight away.
    paused = await paused_hosts(session)
    dues = [until if (until := paused.get(host, 0.0)) > created else 0.0 for host in hosts]
    keys = order_keys(object_key(activity), targets)
    wakeup.added(session.sync_session)  # the hooks do not see statements in SQL text
    rows: list[Row] = [(record_id, inbox, host, due, key, created)
                       for inbox, host, due, key in zip(targets, hosts, dues, keys, strict=True)]
    if held is None:
        await _write_rows(session, rows)
        return record_id
    waiting = held.setdefault("rows", [])
    waiting.extend(rows)
    if len(waiting) >= MOST_ROWS_HELD:  # a batch's memory stays bounded, whatever its relays
        await queued_written(session)
    return record_id
