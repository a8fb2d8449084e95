"""Transactional outbox: delivery rows are added in the caller's transaction.

Nothing is sent here; the caller commits the change and its deliveries together, so a crash
either loses both or neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import host_of
from fedi.store.models import Actor, Delivery, OutboundActivity, now


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
    rows = [
        {"activity_id": record.id, "inbox_url": inbox, "host": host_of(inbox),
         "state": "pending", "attempts": 0, "next_attempt_at": 0.0, "claimed_until": 0.0,
         "created_at": created}
        for inbox in dict.fromkeys(inboxes)
    ]
    if rows:
        # One executemany, not an ORM object per row: a big group has thousands.
        await session.execute(insert(Delivery), rows)
    return record
