"""The audit log: who did what to whom, when and why. Append-only.

This module only adds and reads entries. The ORM refuses to update or delete one (the
listeners below), so no code path can rewrite history by accident.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.store.models import AuditEntry, now

CLI_ADMIN = "admin (cli)"


class AppendOnly(RuntimeError):
    """Raised when code tries to change or remove an audit entry."""


def _refuse(_mapper: object, _connection: object, target: AuditEntry) -> None:
    raise AppendOnly(f"audit entry {target.id} cannot be changed or removed")


event.listen(AuditEntry, "before_update", _refuse)
event.listen(AuditEntry, "before_delete", _refuse)


async def record(
    session: AsyncSession,
    who: str,
    action: str,
    target: str,
    reason: str | None = None,
    group_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry in the caller's transaction (it commits with the action it records)."""
    entry = AuditEntry(
        at=now(), who=who, action=action, target=target, reason=reason, group_id=group_id,
        details=json.dumps(details or {}, sort_keys=True),
    )
    session.add(entry)
    await session.flush()
    return entry


async def for_admins(
    session: AsyncSession, *, group_id: int | None = None, limit: int = 200
) -> list[AuditEntry]:
    """Instance admins see everything, newest first (optionally one group's entries)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if group_id is not None:
        query = query.where(AuditEntry.group_id == group_id)
    return list((await session.execute(query)).scalars())


async def for_group(session: AsyncSession, group_id: int, *, limit: int = 200) -> list[AuditEntry]:
    """What a group's moderators see: the entries about their group, newest first."""
    return await for_admins(session, group_id=group_id, limit=limit)
