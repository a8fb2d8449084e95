"""The audit log read with filters (who, action, group, dates), for the admin pages."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.store.models import AuditEntry

MAX_ROWS = 500


@dataclass(frozen=True)
class LogFilter:
    who: str = ""  # part of the actor URI, or "admin (cli)"
    action: str = ""  # exact action, or a prefix ending in "." ("group.")
    group_id: int | None = None
    since: float | None = None
    until: float | None = None  # exclusive


async def entries(session: AsyncSession, wanted: LogFilter,
                  limit: int = MAX_ROWS) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(min(limit, MAX_ROWS))
    if wanted.who:
        escaped = wanted.who.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(AuditEntry.who.like(f"%{escaped}%", escape="\\"))
    if wanted.action:
        if wanted.action.endswith("."):
            query = query.where(AuditEntry.action.startswith(wanted.action, autoescape=True))
        else:
            query = query.where(AuditEntry.action == wanted.action)
    if wanted.group_id is not None:
        query = query.where(AuditEntry.group_id == wanted.group_id)
    if wanted.since is not None:
        query = query.where(AuditEntry.at >= wanted.since)
    if wanted.until is not None:
        query = query.where(AuditEntry.at < wanted.until)
    return list((await session.execute(query)).scalars())
