"""The delivery queue as an admin sees it: counts by state, rows with their reasons, hosts
with their health, and the figures /metrics exports."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.addresses import normalise_or_none
from fedi.store.models import Delivery, Host

log = logging.getLogger(__name__)

STATES = ("pending", "done", "failed", "dropped")


def _spelled(host: str) -> str:
    """A host as typed by an admin, in the one spelling the queue stores (SECURITY 22)."""
    return normalise_or_none(host) or host.strip().lower()


@dataclass(frozen=True)
class QueuedDelivery:
    id: int
    state: str
    inbox_url: str
    host: str
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    host_gone: bool
    host_down_until: float


@dataclass(frozen=True)
class QueueView:
    counts: dict[str, int]
    rows: list[QueuedDelivery]


async def queue_view(
    session: AsyncSession, *, state: str | None = None, host: str | None = None,
    limit: int = 100,
) -> QueueView:
    """Counts per state (of `host` if given) and the newest `limit` rows matching the filter."""
    scope = [Delivery.host == _spelled(host)] if host else []
    counts = {
        row_state: count
        for row_state, count in (
            await session.execute(
                select(Delivery.state, func.count()).where(*scope).group_by(Delivery.state)
            )
        ).all()
    }
    query = (
        select(
            Delivery.id, Delivery.state, Delivery.inbox_url, Delivery.host, Delivery.attempts,
            Delivery.next_attempt_at, Delivery.last_status, Delivery.last_error,
            func.coalesce(Host.gone, False), func.coalesce(Host.down_until, 0.0),
        )
        .outerjoin(Host, Host.host == Delivery.host)
        .where(*scope)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    if state is not None:
        query = query.where(Delivery.state == state)
    rows = [
        QueuedDelivery(
            id=r[0], state=r[1], inbox_url=r[2], host=r[3], attempts=r[4],
            next_attempt_at=r[5], last_status=r[6], last_error=r[7], host_gone=bool(r[8]),
            host_down_until=float(r[9]),
        )
        for r in (await session.execute(query)).all()
    ]
    return QueueView(counts, rows)


@dataclass(frozen=True)
class QueueHealth:
    """The pending deliveries in figures (/metrics reads this at each scrape)."""

    pending: int
    due: int  # the worker would claim them now: time come, not in flight, host not paused
    in_flight: int
    oldest_due_at: float | None  # since when the longest-waiting due row has been due
    hosts_failing: int  # consecutive failures, not (yet) gone
    hosts_paused: int  # skipped by the circuit breaker now
    hosts_gone: int


def _held_back(moment: float) -> ColumnElement[bool]:
    """Rows whose host the worker skips now (gone, or paused by the breaker)."""
    return Delivery.host.in_(select(Host.host).where(or_(Host.gone, Host.down_until > moment)))


async def queue_health(session: AsyncSession, moment: float) -> QueueHealth:
    in_flight = Delivery.claimed_until >= moment
    due = and_(Delivery.next_attempt_at <= moment, ~in_flight, ~_held_back(moment))
    # New rows are due from when they were made (their next_attempt_at is 0).
    due_since = case((Delivery.next_attempt_at > Delivery.created_at, Delivery.next_attempt_at),
                     else_=Delivery.created_at)
    pending, due_count, flying, oldest = (await session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((due, 1), else_=0)), 0),
            func.coalesce(func.sum(case((in_flight, 1), else_=0)), 0),
            func.min(case((due, due_since), else_=None)),
        ).where(Delivery.state == "pending")
    )).one()
    failing, paused, gone = (await session.execute(
        select(
            func.coalesce(func.sum(case((and_(Host.failures > 0, ~Host.gone), 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(Host.down_until > moment, ~Host.gone), 1),
                                        else_=0)), 0),
            func.coalesce(func.sum(case((Host.gone, 1), else_=0)), 0),
        )
    )).one()
    return QueueHealth(int(pending), int(due_count), int(flying),
                       None if oldest is None else float(oldest),
                       int(failing), int(paused), int(gone))


@dataclass(frozen=True)
class HostSummary:
    """One remote host's share of the queue and its health (`fedi admin queue`)."""

    host: str
    pending: int
    due: int
    in_flight: int
    failures: int
    down_until: float
    gone: bool
    last_error: str | None  # of its most recently tried pending (or else failed) delivery


async def host_summaries(
    session: AsyncSession, moment: float, limit: int = 100
) -> list[HostSummary]:
    """Hosts with pending deliveries, or failing, or gone: the most pending first."""
    in_flight = Delivery.claimed_until >= moment
    due = and_(Delivery.next_attempt_at <= moment, ~in_flight)
    counts = {
        host: (int(pending), int(due_count), int(flying))
        for host, pending, due_count, flying in (await session.execute(
            select(Delivery.host, func.count(),
                   func.sum(case((due, 1), else_=0)), func.sum(case((in_flight, 1), else_=0)))
            .where(Delivery.state == "pending").group_by(Delivery.host)
        )).all()
    }
    health = {
        h.host: h for h in (await session.execute(
            select(Host).where(or_(Host.failures > 0, Host.gone, Host.down_until > moment,
                                   Host.host.in_(list(counts))))
        )).scalars()
    }
    hosts = sorted(set(counts) | set(health),
                   key=lambda h: (-counts.get(h, (0, 0, 0))[0], h))[:limit]
    latest = select(func.max(Delivery.id)).where(
        Delivery.host.in_(hosts), Delivery.last_error.is_not(None),
        Delivery.state.in_(("pending", "failed")),
    ).group_by(Delivery.host)
    errors = dict((await session.execute(
        select(Delivery.host, Delivery.last_error).where(Delivery.id.in_(latest))
    )).all()) if hosts else {}
    return [
        HostSummary(
            host=host, pending=counts.get(host, (0, 0, 0))[0],
            due=counts.get(host, (0, 0, 0))[1], in_flight=counts.get(host, (0, 0, 0))[2],
            failures=health[host].failures or 0 if host in health else 0,
            down_until=health[host].down_until or 0.0 if host in health else 0.0,
            gone=bool(health[host].gone) if host in health else False,
            last_error=errors.get(host),
        )
        for host in hosts
    ]


@dataclass(frozen=True)
class Retried:
    host: str
    rows: int  # pending deliveries made due now
    was_paused: bool
    was_gone: bool


async def retry_host(session: AsyncSession, host: str, moment: float) -> Retried:
    """Make `host`'s pending deliveries due now and clear its backoff and circuit breaker
    (also a gone mark: deliveries already closed for it stay closed). Rows in flight are left
    to their worker. No commit: the caller's transaction."""
    host = _spelled(host)
    record = await session.get(Host, host)
    rows = (await session.execute(
        update(Delivery)
        .where(Delivery.host == host, Delivery.state == "pending",
               Delivery.claimed_until < moment)
        .values(next_attempt_at=0.0)
        .execution_options(synchronize_session=False)
    )).rowcount  # type: ignore[attr-defined]
    paused = record is not None and (record.down_until or 0.0) > moment
    gone = record is not None and bool(record.gone)
    if record is not None:
        record.failures = 0
        record.down_until = 0.0
        record.gone = False
    return Retried(host, int(rows or 0), paused, gone)


async def revive_hosts(session: AsyncSession, hosts: set[str], moment: float) -> list[str]:
    """`hosts` talked to us (a signed activity of theirs was accepted): those marked gone or
    held back by the circuit breaker get their deliveries back, as `retry_host` does (rows
    closed while a host was gone stay closed). Returns the hosts revived. One indexed query
    when none of them is held back; no commit: the caller's transaction."""
    if not hosts:
        return []
    held = list((await session.execute(
        select(Host.host).where(
            Host.host.in_(sorted(hosts)),
            or_(Host.gone, Host.failures > 0, Host.down_until > 0.0),
        )
    )).scalars())
    for host in held:
        retried = await retry_host(session, host, moment)
        log.info("host %s talks to us again: its deliveries resume (%d pending%s)",
                 host, retried.rows, ", was marked gone" if retried.was_gone else "")
    return held
