"""/healthz, /readyz and /metrics: what a load balancer, an orchestrator and Prometheus ask.

- /healthz: the process answers (no database access), for liveness probes.
- /readyz: the database answers, its schema is at this code's head, and a worker was seen
  recently; otherwise 503 with the failing checks, for readiness probes and the proxy.
- /metrics: Prometheus text format. Served to loopback clients that are not behind a proxy,
  or to anyone with FEDI_METRICS_TOKEN as a bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fedi import metrics
from fedi.delivery.queue import queue_health
from fedi.delivery.worker import brief
from fedi.federation.backlog import inbox_figures
from fedi.services import Services
from fedi.store.heartbeats import last_seen
from fedi.store.migrate import head_revision
from fedi.worker_loop import HEARTBEAT_SECONDS

# A worker beats every HEARTBEAT_SECONDS; missing several in a row means none runs.
WORKER_STALE_SECONDS = 6 * HEARTBEAT_SECONDS
CHECK_TIMEOUT = 3.0
_DB_ERRORS = (SQLAlchemyError, OSError, ConnectionError, TimeoutError)
# Headers a reverse proxy adds: such a request came from outside, whatever its address.
_FORWARDED = ("forwarded", "x-forwarded-for", "x-real-ip")
_HEAD: list[str | None] = []  # the code's head revision, read once


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _head() -> str | None:
    if not _HEAD:
        _HEAD.append(head_revision())
    return _HEAD[0]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services = _services(request)
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), services.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
            checks["database"] = "ok"
            checks["migrations"] = await _migrations(session)
            checks["worker"] = _worker(await last_seen(session), time.time())
    except (*_DB_ERRORS, TimeoutError) as exc:
        reason = "no answer within 3 s" if isinstance(exc, TimeoutError) else brief(exc)
        checks = {"database": f"unreachable: {reason}"}
    failed = [name for name, result in checks.items() if not result.startswith("ok")]
    return JSONResponse(
        {"status": "not ready" if failed else "ready", "failed": failed, "checks": checks},
        status_code=503 if failed else 200, headers={"Cache-Control": "no-store"},
    )


async def _migrations(session: AsyncSession) -> str:
    try:
        current = (await session.execute(
            text("SELECT version_num FROM alembic_version")
        )).scalar_one_or_none()
    except (OperationalError, ProgrammingError):  # no alembic_version table: no schema yet
        await session.rollback()
        current = None
    head = _head()
    if current == head:
        return f"ok (at {head})"
    return f"the database is at {current or 'no revision'}, this fedi needs {head}: run " \
        "`fedi migrate`"


def _worker(seen: float | None, moment: float) -> str:
    if seen is not None and moment - seen <= WORKER_STALE_SECONDS:
        return f"ok (seen {max(0.0, moment - seen):.0f} s ago)"
    when = "never" if seen is None else f"last {moment - seen:.0f} s ago"
    return (f"no worker seen in the last {WORKER_STALE_SECONDS:.0f} s ({when}): run "
            "`fedi worker`, or `fedi serve` without --no-worker")


def may_scrape(client_host: str | None, headers: dict[str, str], token: str | None) -> bool:
    """A bearer token equal to FEDI_METRICS_TOKEN, or a loopback client not behind a proxy
    (a proxy on the same host connects from loopback on everyone's behalf)."""
    if token:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode()):
            return True
    if client_host is None or any(name in headers for name in _FORWARDED):
        return False
    try:
        return ipaddress.ip_address(client_host).is_loopback
    except ValueError:
        return False


async def metrics_page(request: Request) -> Response:
    services = _services(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    client = request.client.host if request.client is not None else None
    if not may_scrape(client, headers, services.settings.metrics_token):
        return JSONResponse(
            {"error": "metrics are served to loopback clients, or with FEDI_METRICS_TOKEN "
             "as a bearer token (Authorization: Bearer TOKEN)"},
            status_code=403,
        )
    gauges = await _queue_gauges(services)
    return Response(metrics.exposition(metrics.snapshot(gauges)),
                    media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


async def _queue_gauges(services: Services) -> dict[str, tuple[str, float]]:
    """The queues as the database has them now (shared by every process)."""
    moment = time.time()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), services.sessionmaker() as session:
            depth, oldest = await inbox_figures(session)
            queue = await queue_health(session, moment)
            seen = await last_seen(session)
    except (*_DB_ERRORS, TimeoutError):
        return {"fedi_database_up": ("1 if the database answered this scrape", 0.0)}
    found: dict[str, Any] = {
        "fedi_database_up": ("1 if the database answered this scrape", 1.0),
        "fedi_inbox_queue_depth": ("Received activities waiting to be processed", depth),
        "fedi_inbox_queue_oldest_age_seconds": (
            "How long the oldest unprocessed activity has waited",
            0.0 if oldest is None else max(0.0, moment - oldest)),
        "fedi_delivery_queue_pending": ("Deliveries not yet done or failed", queue.pending),
        "fedi_delivery_queue_due": (
            "Pending deliveries due now (not in flight, host not paused)", queue.due),
        "fedi_delivery_queue_in_flight": ("Deliveries being sent now", queue.in_flight),
        "fedi_delivery_queue_oldest_due_age_seconds": (
            "How long the longest-waiting due delivery has been due",
            0.0 if queue.oldest_due_at is None else max(0.0, moment - queue.oldest_due_at)),
        "fedi_delivery_hosts_failing": ("Remote hosts failing, not marked gone",
                                        queue.hosts_failing),
        "fedi_delivery_hosts_paused": ("Remote hosts paused by the circuit breaker",
                                       queue.hosts_paused),
        "fedi_delivery_hosts_gone": ("Remote hosts marked gone (dead)", queue.hosts_gone),
        "fedi_worker_last_seen_age_seconds": (
            "Seconds since any worker's last heartbeat (absent: none ever)", None
            if seen is None else max(0.0, moment - seen)),
    }
    return {name: (doc, float(value)) for name, (doc, value) in found.items()
            if value is not None}


routes = [
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
    Route("/metrics", metrics_page, methods=["GET"]),
]
