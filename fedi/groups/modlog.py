"""Who acts for a group, and the group's moderation log as each reader may see it.

Every moderation decision (from `fedi mod`, from the moderators' pages) is written to the
audit log under the one who made it: a moderator's actor id, or "admin (cli)" when the
server's operator acted without naming anyone. The public log (Lemmy's and PieFed's modlog)
shows who did what, to what, when and why; reasons that carry what a reporter wrote stay
with the moderators.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.errors import ValidationError
from fedi.groups.roles import standing
from fedi.store.models import Actor, AuditEntry, now

# Reasons of these entries quote reports or private notes: moderators only.
PRIVATE_REASONS = frozenset({
    "report.resolve", "report.forward", "group.resolve-report", "post.remove",
})


@dataclass(frozen=True)
class Moderator:
    """The one acting: `who` is what the audit log records."""

    who: str
    actor: Actor | None


# The server's operator at the shell, named as moderation.audit.CLI_ADMIN names it (that
# module is of the same layer, so not imported here; a test holds the two equal).
OPERATOR = Moderator("admin (cli)", None)


class NotModerator(ValidationError):
    """The person does not moderate this group: nothing is done."""


async def acting(session: AsyncSession, group: Actor, actor: Actor) -> Moderator:
    """`actor` acting for `group`, if they are its owner or one of its moderators."""
    if not (await standing(session, group, actor)).moderates:
        raise NotModerator(f"{actor.username} does not moderate {group.username}")
    return Moderator(actor.uri, actor)


async def record(
    session: AsyncSession, by: Moderator, group: Actor, action: str, target: str,
    reason: str | None = None, details: dict[str, Any] | None = None,
) -> None:
    """One decision on the record, in the transaction that makes it (the audit log is
    append-only: moderation.audit refuses any change to a written entry)."""
    session.add(AuditEntry(
        at=now(), who=by.who, action=f"group.{action}", target=target,
        reason=(reason or "").strip() or None, group_id=group.id,
        details=json.dumps(details or {}, sort_keys=True),
    ))
    await session.flush()


@dataclass(frozen=True)
class LogLine:
    at: float
    who: str  # the audit log's name for the one who acted
    who_name: str  # what a reader is shown
    action: str
    target: str
    reason: str | None  # None when it is not this reader's to see
    details: dict[str, Any]  # moderators only; empty for everyone else


async def read(
    session: AsyncSession, group: Actor, *, moderator: bool, limit: int = 200
) -> list[LogLine]:
    """The group's log, newest first, as a moderator (everything) or anyone else reads it."""
    entries = (await session.execute(
        select(AuditEntry).where(AuditEntry.group_id == group.id)
        .order_by(AuditEntry.id.desc()).limit(limit)
    )).scalars().all()
    uris = {e.who for e in entries if "://" in e.who}
    names: dict[str, str] = {}
    if uris:
        for found in (await session.execute(select(Actor).where(Actor.uri.in_(uris)))).scalars():
            names[found.uri] = found.name or (
                found.username if found.local else f"{found.username}@{found.domain}")
    lines: list[LogLine] = []
    for entry in entries:
        private = entry.action in PRIVATE_REASONS
        details = json.loads(entry.details or "{}") if moderator else {}
        lines.append(LogLine(
            at=entry.at, who=entry.who, who_name=names.get(entry.who, entry.who),
            action=entry.action.removeprefix("group."), target=entry.target,
            reason=entry.reason if moderator or not private else None,
            details=details if isinstance(details, dict) else {},
        ))
    return lines
