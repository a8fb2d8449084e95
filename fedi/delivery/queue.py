"""The delivery queue as an admin sees it: counts by state and rows with their reasons."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.store.models import Delivery, Host

STATES = ("pending", "done", "failed", "dropped")


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
    scope = [Delivery.host == host.lower()] if host else []
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
