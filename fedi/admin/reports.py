"""Closing an instance-level report, and retrying a delivery host: `fedi admin
report-resolve`, `fedi admin queue --retry` and the /admin pages make these same calls."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.admin.acting import Admin
from fedi.delivery import queue as delivery_queue
from fedi.errors import FediError, ValidationError
from fedi.groups import moderation as group_moderation
from fedi.moderation import audit, blocks, reports
from fedi.moderation.blocks import BlockSettings
from fedi.store.models import Actor, now
from fedi.urls import Urls

MAX_NOTE = 2000


def _plural(n: int, one: str) -> str:
    return f"{n} {one if n == 1 else one + 's'}"


async def resolve(
    session: AsyncSession, urls: Urls, admin: Admin, report_id: int, *, action: str,
    note: str, own_domain: str,
) -> str:
    """Close the report with `action` (reports.ACTIONS); what was done, in words."""
    if action not in reports.ACTIONS:
        raise ValidationError(f"the action must be one of {', '.join(reports.ACTIONS)}")
    note = note.strip()
    if not note:
        raise ValidationError("say why in the note: it is kept with the report and audited")
    if len(note) > MAX_NOTE:
        raise ValidationError(f"the note is longer than {MAX_NOTE} characters")
    report = await reports.get_report(session, report_id)
    if report.state != "open":
        raise ValidationError(f"report {report.id} is already resolved")
    target = await session.get(Actor, report.target_id)
    if target is None:
        raise FediError(f"report {report.id} names an account that no longer exists")
    done = "no action"
    if action == "ban":
        if report.group_id is None:
            raise ValidationError(f"report {report.id} is not about a post in a local group; "
                                  "use suspend-domain or none")
        group = await session.get(Actor, report.group_id)
        if group is None:
            raise FediError(f"the group of report {report.id} no longer exists")
        by = await session.get(Actor, admin.actor_id) if admin.actor_id else None
        await group_moderation.ban(session, urls, group, target, by=by, reason=note)
        await audit.record(session, admin.who, "group.ban", target.uri, reason=note,
                           group_id=group.id, details={"report": report.id})
        done = f"{target.uri} banned from {group.username}"
    elif action == "remove":
        removed = await reports.hide_reported_posts(session, report)
        if not removed:
            raise ValidationError(f"report {report.id} names no post that is still shown")
        await audit.record(session, admin.who, "post.remove", target.uri, reason=note,
                           group_id=report.group_id,
                           details={"report": report.id, "posts": reports.post_uris(report)})
        done = f"{_plural(removed, 'post')} removed"
    elif action == "suspend-domain":
        if target.local:
            raise ValidationError(f"{target.uri} is a local account; there is no domain to "
                                  "suspend")
        result = await blocks.add_block(
            session, target.domain,
            BlockSettings("suspend", private_comment=f"report {report.id}: {note}"),
            who=admin.who, own_domain=own_domain,
        )
        done = f"{result.domain} suspended"
    await reports.resolve(session, report, action=action, note=note, who=admin.who,
                          resolved_by=admin.actor_id)
    return done


async def retry_host(session: AsyncSession, admin: Admin,
                     host: str) -> delivery_queue.Retried:
    """Make the host's pending deliveries due now and clear its backoff, breaker and gone
    mark; refused when there is nothing to retry."""
    done = await delivery_queue.retry_host(session, host.strip(), now())
    if not done.rows and not (done.was_paused or done.was_gone):
        raise ValidationError(f"{done.host} has no pending deliveries and is not paused "
                              "or gone; nothing to retry")
    await audit.record(session, admin.who, "delivery.retry", done.host,
                       details={"deliveries": done.rows, "was_paused": done.was_paused,
                                "was_gone": done.was_gone})
    return done
