"""Delivery worker: claims due outbox rows, signs and POSTs them, records what happened.

- Claims use a lease (`claimed_until`): a worker killed mid-batch loses nothing, its rows are
  claimed again once the lease runs out. On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets many
  `fedi worker` processes share the queue without taking the same row.
- Concurrency is bounded globally and per host; a batch takes at most a few rows per host so
  one slow host cannot fill it, and hosts behind an open circuit breaker are not claimed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi.activitypub.client import FederationClient
from fedi.activitypub.keys import SigningKey
from fedi.delivery.retry import Outcome, breaker_pause, decide
from fedi.errors import FetchError
from fedi.store.models import Actor, Delivery, Host, OutboundActivity

log = logging.getLogger(__name__)

HostPolicy = Callable[[str], Awaitable[str | None]]
LAUNCH_WAVE = 32


@dataclass(frozen=True)
class _Claimed:
    id: int
    inbox_url: str
    host: str
    attempts: int
    created_at: float
    activity_id: int
    shared: bool


@dataclass(frozen=True)
class _Result:
    row: _Claimed
    outcome: Outcome
    status: int | None
    error: str | None


class DeliveryWorker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: FederationClient,
        *,
        concurrency: int = 128,
        per_host: int = 8,
        batch_size: int = 2000,
        lease_seconds: float = 300.0,
        host_policy: HostPolicy | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._client = client
        self._global = asyncio.Semaphore(concurrency)
        self._per_host = per_host
        self._host_locks: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(per_host)
        )
        self._batch_size = batch_size
        self._lease = lease_seconds
        self._host_policy = host_policy
        self._clock = clock
        self._rng = rng or random.Random()
        self._keys: dict[int, SigningKey] = {}
        self._postgres = sessionmaker.kw["bind"].dialect.name == "postgresql"

    async def run_once(self) -> int:
        """Deliver one batch of due rows; return how many were attempted."""
        rows, bodies = await self._claim()
        if not rows:
            return 0
        tasks: list[asyncio.Task[_Result]] = []
        for start in range(0, len(rows), LAUNCH_WAVE):
            tasks += [asyncio.create_task(self._send(row, bodies))
                      for row in rows[start:start + LAUNCH_WAVE]]
            # Signing is synchronous CPU work: started all at once, every request would be
            # signed before the first one reached the network. In waves, the event loop gets
            # to send the first requests while the next ones are signed.
            await asyncio.sleep(0)
        results = await asyncio.gather(*tasks)
        await self._record(results)
        return len(rows)

    # -- claiming ---------------------------------------------------------------------------
    async def _claim(self) -> tuple[list[_Claimed], dict[int, tuple[bytes, SigningKey]]]:
        moment = self._clock()
        unavailable = select(Host.host).where(or_(Host.down_until > moment, Host.gone))
        ranked = (
            select(
                Delivery.id,
                func.row_number()
                .over(partition_by=Delivery.host, order_by=Delivery.next_attempt_at)
                .label("rank"),
            )
            .where(
                Delivery.state == "pending",
                Delivery.next_attempt_at <= moment,
                Delivery.claimed_until < moment,
                Delivery.host.not_in(unavailable),
            )
            .subquery()
        )
        # Per-host cap inside a batch: a batch never waits long on any single host.
        capped = select(ranked.c.id).where(ranked.c.rank <= self._per_host * 4)
        async with self._sessionmaker() as session, session.begin():
            # The LIMIT sits on the outer query so that rows other workers hold (SKIP LOCKED)
            # are passed over instead of using up the batch.
            query = (
                select(Delivery.id)
                .where(Delivery.id.in_(capped))
                .order_by(Delivery.next_attempt_at)
                .limit(self._batch_size)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.execute(query)).scalars())
            if not ids:
                return [], {}
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(claimed_until=moment + self._lease)
                .execution_options(synchronize_session=False)
            )
            shared = exists().where(Actor.shared_inbox == Delivery.inbox_url)
            result = await session.execute(
                select(
                    Delivery.id, Delivery.inbox_url, Delivery.host, Delivery.attempts,
                    Delivery.created_at, Delivery.activity_id, shared,
                ).where(Delivery.id.in_(ids))
            )
            rows = [_Claimed(*r) for r in result.all()]
            activity_ids = {row.activity_id for row in rows}
            bodies: dict[int, tuple[bytes, SigningKey]] = {}
            found = await session.execute(
                select(
                    OutboundActivity.id, OutboundActivity.body, Actor.id, Actor.key_id,
                    Actor.private_key_pem,
                )
                .join(Actor, Actor.id == OutboundActivity.actor_id)
                .where(OutboundActivity.id.in_(activity_ids))
            )
            for activity_id, body, actor_id, key_id, private_pem in found.all():
                if key_id is None or private_pem is None:
                    continue  # only local actors sign; _send fails such rows with a reason
                key = self._keys.get(actor_id)
                if key is None or key.key_id != key_id:
                    key = SigningKey(key_id=key_id, private_pem=private_pem)
                    self._keys[actor_id] = key
                bodies[activity_id] = (body.encode(), key)
        return rows, bodies

    # -- sending ----------------------------------------------------------------------------
    async def _send(
        self, row: _Claimed, bodies: dict[int, tuple[bytes, SigningKey]]
    ) -> _Result:
        if self._host_policy is not None:
            refusal = await self._host_policy(row.host)
            if refusal is not None:
                return _Result(row, Outcome("dropped", self._clock(), host_ok=True), None, refusal)
        if row.activity_id not in bodies:
            failed = Outcome("failed", self._clock(), host_ok=True)
            return _Result(row, failed, None, "the signing actor has no private key")
        body, key = bodies[row.activity_id]
        status: int | None = None
        retry_after: float | None = None
        error: str | None = None
        async with self._global, self._host_locks[row.host]:
            try:
                response = await self._client.post_activity(row.inbox_url, body, sign_as=key)
                status, retry_after = response.status, response.retry_after
                if status >= 300:
                    error = f"HTTP {status}: {response.body_excerpt}"[:500]
            except FetchError as exc:
                error = exc.reason
        outcome = decide(
            status=status, attempts=row.attempts + 1, created_at=row.created_at,
            now=self._clock(), retry_after=retry_after, shared_inbox=row.shared, rng=self._rng,
        )
        return _Result(row, outcome, status, error)

    # -- recording --------------------------------------------------------------------------
    async def _record(self, results: list[_Result]) -> None:
        moment = self._clock()
        updates = [
            {
                "id": r.row.id,
                "state": r.outcome.state,
                "attempts": r.row.attempts + 1,
                "next_attempt_at": r.outcome.next_attempt_at,
                "claimed_until": 0.0,
                "last_status": r.status,
                "last_error": r.error,
                "done_at": moment if r.outcome.state != "pending" else None,
            }
            for r in results
        ]
        by_host: dict[str, list[Outcome]] = defaultdict(list)
        for r in results:
            if r.outcome.state != "dropped":
                by_host[r.row.host].append(r.outcome)
        async with self._sessionmaker() as session, session.begin():
            await session.execute(update(Delivery), updates)
            await self._update_hosts(session, by_host, moment)

    async def _update_hosts(
        self, session: AsyncSession, by_host: dict[str, list[Outcome]], moment: float
    ) -> None:
        if not by_host:
            return
        known = {
            h.host: h
            for h in (
                await session.execute(select(Host).where(Host.host.in_(list(by_host))))
            ).scalars()
        }
        for host, outcomes in by_host.items():
            record = known.get(host)
            healthy = any(o.host_ok for o in outcomes) and not any(o.host_gone for o in outcomes)
            if record is None:
                if healthy:
                    continue  # a healthy host needs no row: only failures are remembered
                record = Host(host=host, failures=0, down_until=0.0, gone=False)
                session.add(record)
            if any(o.host_gone for o in outcomes):
                record.gone = True
                record.last_failure_at = moment
            elif any(o.host_ok for o in outcomes):
                record.failures = 0
                record.down_until = 0.0
                record.last_success_at = moment
            else:
                record.failures = (record.failures or 0) + 1
                record.last_failure_at = moment
                pause = breaker_pause(record.failures)
                if pause:
                    record.down_until = moment + pause
                    log.warning("host %s failing; pausing deliveries for %.0fs", host, pause)
