"""Worker heartbeats: each worker process updates its row every few seconds; readiness
checks ask when any worker was last seen."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.store.models import WorkerHeartbeat

# Rows of workers gone this long are deleted by the next beat of any worker.
FORGET_AFTER = 86_400.0


async def beat(session: AsyncSession, worker: str, started_at: float, moment: float) -> None:
    """Record that `worker` is alive now (no commit: the caller's transaction)."""
    updated = await session.execute(
        update(WorkerHeartbeat).where(WorkerHeartbeat.worker == worker).values(seen_at=moment)
        .execution_options(synchronize_session=False)
    )
    if not updated.rowcount:  # type: ignore[attr-defined]
        session.add(WorkerHeartbeat(worker=worker, started_at=started_at, seen_at=moment))
        await session.execute(
            delete(WorkerHeartbeat).where(WorkerHeartbeat.seen_at < moment - FORGET_AFTER)
        )


async def forget(session: AsyncSession, worker: str) -> None:
    """A worker that stops cleanly is no longer counted as running."""
    await session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker == worker))


async def last_seen(session: AsyncSession) -> float | None:
    """When any worker last said it was alive (None: never)."""
    seen: float | None = (
        await session.execute(select(func.max(WorkerHeartbeat.seen_at)))
    ).scalar_one_or_none()
    return seen
