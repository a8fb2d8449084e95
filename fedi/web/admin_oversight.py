"""/admin/reports, /admin/audit and /admin/queue: instance-level reports, the audit log with
filters, and the delivery queue (retry a host now), as `fedi admin reports|audit|queue`."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.admin import groups, log
from fedi.admin import reports as admin_reports
from fedi.admin.acting import Admin
from fedi.delivery import queue as delivery_queue
from fedi.errors import FediError, ValidationError
from fedi.moderation import reports
from fedi.store.models import now
from fedi.web.admin_common import admin_form, admin_page, context, text
from fedi.web.auth import render, services_of
from fedi.web.params import row_id


@admin_page
async def report_list(request: Request, admin: Admin) -> Response:
    everything = request.query_params.get("all") == "1"
    async with services_of(request).sessionmaker() as session:
        views = await reports.list_reports(session, include_resolved=everything)
    return await render(request, "admin_reports.html", context(
        admin, "reports", views=views, everything=everything, actions=reports.ACTIONS,
        post_uris=reports.post_uris))


async def _resolve(request: Request, form: FormData, session: AsyncSession,
                   admin: Admin) -> tuple[str, str]:
    report_id = row_id(request.path_params["report_id"])
    if report_id is None:
        raise ValidationError("there is no such report")
    done = await admin_reports.resolve(
        session, services_of(request).urls, admin, report_id, action=text(form, "action"),
        note=text(form, "note"), own_domain=services_of(request).settings.domain)
    return f"Report {report_id} resolved: {done}.", "/admin/reports"


def _day(raw: str, name: str) -> float | None:
    if not raw:
        return None
    try:
        return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC).timestamp()
    except ValueError:
        raise ValidationError(f"the {name} date is not a date (YYYY-MM-DD)") from None


@admin_page
async def audit_log(request: Request, admin: Admin) -> Response:
    q = request.query_params
    shown = {k: q.get(k, "")[:200] for k in ("who", "action", "group", "since", "until")}
    error = None
    found = []
    async with services_of(request).sessionmaker() as session:
        try:
            group_id = None
            if shown["group"]:
                group_id = (await groups.group_named(session, shown["group"])).id
            until = _day(shown["until"], "until")
            wanted = log.LogFilter(who=shown["who"].strip(), action=shown["action"].strip(),
                                   group_id=group_id, since=_day(shown["since"], "from"),
                                   until=until + 86400 if until is not None else None)
            found = await log.entries(session, wanted)
        except FediError as exc:
            error = str(exc)
    return await render(request, "admin_audit.html", context(
        admin, "audit", entries=found, shown=shown, error=error, limit=log.MAX_ROWS),
        status=400 if error else 200)


@admin_page
async def queue(request: Request, admin: Admin) -> Response:
    moment = now()
    async with services_of(request).sessionmaker() as session:
        health = await delivery_queue.queue_health(session, moment)
        view = await delivery_queue.queue_view(session, limit=0)
        hosts = await delivery_queue.host_summaries(session, moment, limit=100)
    return await render(request, "admin_queue.html", context(
        admin, "queue", health=health, counts=view.counts, states=delivery_queue.STATES,
        hosts=hosts, moment=moment))


async def _retry(request: Request, form: FormData, session: AsyncSession,
                 admin: Admin) -> tuple[str, str]:
    done = await admin_reports.retry_host(session, admin, text(form, "host"))
    gone = "; it is no longer marked gone" if done.was_gone else ""
    return (f"Retrying {done.host} now: {done.rows} pending deliveries due now, backoff and "
            f"circuit breaker cleared{gone}."), "/admin/queue"


routes = [
    Route("/admin/reports", report_list),
    Route("/admin/reports/{report_id}/resolve", admin_form(_resolve), methods=["POST"]),
    Route("/admin/audit", audit_log),
    Route("/admin/queue", queue),
    Route("/admin/queue/retry", admin_form(_retry), methods=["POST"]),
]
