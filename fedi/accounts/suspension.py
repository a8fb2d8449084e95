"""Suspended local accounts: they cannot sign in and have no sessions.

Kept as InstanceSetting rows (`suspended:<actor id>` → JSON of when, who and why): the
schema is fixed for now, and the set is small and read only at sign-in and on admin pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts import sessions
from fedi.store.models import InstanceSetting, now

PREFIX = "suspended:"


@dataclass(frozen=True)
class Suspension:
    actor_id: int
    at: float
    who: str
    reason: str | None


def _key(actor_id: int) -> str:
    return f"{PREFIX}{actor_id}"


async def find(session: AsyncSession, actor_id: int) -> Suspension | None:
    row = await session.get(InstanceSetting, _key(actor_id))
    if row is None:
        return None
    data = json.loads(row.value)
    return Suspension(actor_id, float(data["at"]), str(data["who"]), data.get("reason"))


async def all_suspended(session: AsyncSession) -> dict[int, Suspension]:
    rows = (await session.execute(
        select(InstanceSetting).where(InstanceSetting.key.startswith(PREFIX))
    )).scalars()
    found: dict[int, Suspension] = {}
    for row in rows:
        data = json.loads(row.value)
        actor_id = int(row.key.removeprefix(PREFIX))
        found[actor_id] = Suspension(actor_id, float(data["at"]), str(data["who"]),
                                     data.get("reason"))
    return found


async def suspend(session: AsyncSession, actor_id: int, *, who: str,
                  reason: str | None) -> int:
    """Mark the account suspended and end its sessions; how many sessions ended."""
    value = json.dumps({"at": now(), "who": who, "reason": reason})
    row = await session.get(InstanceSetting, _key(actor_id))
    if row is None:
        session.add(InstanceSetting(key=_key(actor_id), value=value))
    else:
        row.value = value
    await session.flush()
    return await sessions.end_all(session, actor_id)


async def lift(session: AsyncSession, actor_id: int) -> bool:
    row = await session.get(InstanceSetting, _key(actor_id))
    if row is None:
        return False
    await session.delete(row)
    return True
