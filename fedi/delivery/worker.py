"""Delivery worker: claims due outbox rows, signs and POSTs them, records what happened.

- Claims are continuous: every delivery is its own task, and slots are refilled as they free,
  never after a whole batch. A slow or hanging host holds at most its per-host limit of slots;
  the rest keep flowing (SECURITY 16).
- The per-host limit adapts (fedi.delivery.host_limits): it starts at `per_host_start`, grows
  while the host answers fast, up to `per_host`, and is cut on 429, 5xx, timeouts and slow
  answers; Retry-After pauses the host. Connections to a host are kept alive and reused (one
  pooled client), so a far host costs one round trip per delivery, not three.
- Order per object: a row is claimed only when no earlier row with its `order_key` (object and
  inbox, fedi.delivery.enqueue) is pending, in flight or waiting for a retry, in any process.
- Claims use a lease (`claimed_until`) that is renewed while the request is in flight: a worker
  killed mid-flight loses nothing, its rows are claimed again once the lease runs out, and a
  request that hangs is not claimed twice. On PostgreSQL `FOR UPDATE SKIP LOCKED` lets many
  `fedi worker` processes share the queue without taking the same row.
- Time: leases, backoff and breaker pauses are wall-clock instants in the database (several
  processes share them); new rows are due at once (`next_attempt_at` 0), so a wall clock that
  jumps back does not hold new work. Intervals within the process use the monotonic clock.
- Dead hosts do not slow healthy ones: claims go round robin across hosts, failing hosts last
  and one row at a time; a host no connection opens to is paused at once (in this process
  before the claim's next round, in `hosts` when recorded), so its other rows are neither
  signed nor sent.
- Final without retrying: rows the SSRF guard refuses, and rows for a host marked gone; each
  keeps its reason in `last_error`.
- Signing: RSA for everyone, RFC 9421 `ed25519` first for hosts whose actors publish an
  Ed25519 Multikey (fedi.delivery.signers).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import case, exists, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from fedi import metrics
from fedi.activitypub.client import ConnectFailed, DestinationRefused, FederationClient
from fedi.delivery.host_limits import HostLimits
from fedi.delivery.retry import Outcome, breaker_pause, decide
from fedi.delivery.signers import Signer, Signers
from fedi.errors import FetchError
from fedi.store.models import Actor, Delivery, Host, OutboundActivity

log = logging.getLogger(__name__)

HostPolicy = Callable[[str], Awaitable[str | None]]
LAUNCH_WAVE = 32
GONE_REASON = "not sent: the host is gone (its shared inbox answered 410 Gone)"
SWEEP_SECONDS = 30.0  # how often rows for gone hosts are closed
DEFER_SECONDS = 5.0  # how often due rows of paused hosts are moved to the end of the pause
STOP_GRACE = 5.0  # on shutdown, in-flight requests get this long before they are released
# Errors of the database or the connection to it: the worker waits and carries on.
_DB_ERRORS = (SQLAlchemyError, OSError, ConnectionError, TimeoutError)


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
    neutral: bool = False  # says nothing about the host's health (refused before sending)
    attempted: bool = True  # False: released untried (e.g. the domain policy was unavailable)


Bodies = dict[int, tuple[bytes, Signer]]


def brief(exc: BaseException) -> str:
    """One line about a database error: the driver's message, never the SQL or its parameters."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0][:200] if lines else ''}"


class DeliveryWorker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: FederationClient,
        *,
        concurrency: int = 128,
        per_host: int = 64,
        per_host_start: int = 8,
        batch_size: int = 2000,
        lease_seconds: float = 300.0,
        host_policy: HostPolicy | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._client = client
        self._concurrency = max(1, concurrency)
        self._per_host = max(1, per_host)  # the ceiling of every host's adaptive limit
        self.host_limits = HostLimits(start=per_host_start, ceiling=self._per_host)
        self._batch_size = batch_size
        self._lease = lease_seconds
        self._host_policy = host_policy
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._signers = Signers(monotonic)
        self._postgres = sessionmaker.kw["bind"].dialect.name == "postgresql"
        # Refill when this many slots are free (or nothing runs): claims and records in
        # groups, not one transaction per delivery.
        self._refill_at = max(1, self._concurrency // 8)
        self._running: dict[int, _Claimed] = {}  # sending now
        self._host_running: Counter[str] = Counter()
        self._finished: list[_Result] = []  # sent, not yet recorded
        self._tasks: set[asyncio.Task[None]] = set()
        self._progress = asyncio.Event()
        self._swept_at: float | None = None
        self._deferred_at: float | None = None
        # Hosts no connection could be opened to, until when (wall clock): their other rows are
        # neither claimed nor signed, also before the pause is recorded in `hosts`.
        self._unreachable: dict[str, float] = {}
        self._renewed_at = monotonic()

    # -- driving ------------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Deliver every row that is due now, refilling slots as they free; return how many
        were attempted. Database errors propagate (tests and benchmarks want to see them)."""
        return await self._pump(None, None, 0.5)

    async def run(
        self, stop: asyncio.Event, wake: asyncio.Event | None = None, idle_seconds: float = 0.5
    ) -> None:
        """Deliver until stop is set; a database outage is waited out, not fatal."""
        await self._pump(stop, wake, idle_seconds)

    async def _pump(
        self, stop: asyncio.Event | None, wake: asyncio.Event | None, idle_seconds: float
    ) -> int:
        if wake is not None:
            self._progress = wake  # one event: new work enqueued or a slot freed
        attempted = 0
        pause = 0.0  # after a database error, growing
        flushed_at = self._monotonic()
        stop_by: float | None = None
        while True:
            stopping = stop is not None and stop.is_set()
            if stopping and stop_by is None:
                stop_by = self._monotonic() + STOP_GRACE
            claimed: int | None = None
            try:
                await self._housekeeping()
                room = self._concurrency - len(self._running)
                if self._finished and (
                    room >= self._refill_at or not self._running or stopping
                    or self._monotonic() - flushed_at > 1.0
                ):
                    await self._flush()
                    flushed_at = self._monotonic()
                if not stopping and (room >= self._refill_at or not self._running):
                    claimed = await self._start(room)
                    attempted += claimed
                pause = 0.0
            except _DB_ERRORS as exc:
                if stop is None:
                    raise
                pause = min(5.0, max(0.25, pause * 2))
                log.warning("delivery worker: database unavailable (%s); retrying in %.1fs",
                            brief(exc), pause)
            idle = not self._running and not self._finished
            if stop is None and idle and claimed == 0:
                return attempted
            if stopping and (idle or (stop_by is not None and self._monotonic() > stop_by)):
                await self._release_all()
                return attempted
            if pause:
                await asyncio.sleep(pause)
                continue
            self._progress.clear()
            room = self._concurrency - len(self._running)
            if self._finished and (room >= self._refill_at or not self._running):
                continue  # results arrived while we claimed: record them and refill
            try:
                await asyncio.wait_for(self._progress.wait(), timeout=idle_seconds)
            except TimeoutError:
                pass

    async def _start(self, room: int) -> int:
        if room <= 0:
            return 0
        rows, bodies = await self._claim(room)
        for start in range(0, len(rows), LAUNCH_WAVE):
            for row in rows[start:start + LAUNCH_WAVE]:
                self._running[row.id] = row
                self._host_running[row.host] += 1
                task = asyncio.create_task(self._deliver(row, bodies))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            # Signing is synchronous CPU work: started all at once, every request would be
            # signed before the first one reached the network. In waves, the event loop gets
            # to send the first requests while the next ones are signed.
            await asyncio.sleep(0)
        return len(rows)

    async def _deliver(self, row: _Claimed, bodies: Bodies) -> None:
        try:
            result = await self._send(row, bodies)
        except asyncio.CancelledError:
            self._forget(row)
            raise
        except Exception as exc:  # a bug must not lose the row: it is retried later
            log.error("delivery %s to %s failed unexpectedly: %r", row.id, row.host, exc)
            outcome = decide(status=None, attempts=row.attempts + 1, created_at=row.created_at,
                             now=self._clock(), rng=self._rng)
            result = _Result(row, outcome, None, f"internal error: {exc!r}"[:500], neutral=True)
        self._forget(row)
        self._finished.append(result)
        self._progress.set()

    def _forget(self, row: _Claimed) -> None:
        if self._running.pop(row.id, None) is not None:
            self._host_running[row.host] -= 1
            if self._host_running[row.host] <= 0:
                del self._host_running[row.host]

    async def _flush(self) -> None:
        results, self._finished = self._finished, []
        try:
            await self._record(results)
        except BaseException:
            self._finished[:0] = results  # sent but not recorded: keep them for the next try
            raise

    async def _housekeeping(self) -> None:
        """Renew the leases of rows in hand; close rows for gone hosts now and then."""
        mono = self._monotonic()
        held = [*self._running, *(r.row.id for r in self._finished)]
        if held and mono - self._renewed_at >= self._lease / 3:
            async with self._sessionmaker() as session, session.begin():
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(held), Delivery.state == "pending")
                    .values(claimed_until=self._clock() + self._lease)
                    .execution_options(synchronize_session=False)
                )
            self._renewed_at = mono
        elif not held:
            self._renewed_at = mono
        if self._deferred_at is None or mono - self._deferred_at >= DEFER_SECONDS:
            await self._defer_paused_hosts()
            self._deferred_at = mono
        if self._swept_at is None or mono - self._swept_at >= SWEEP_SECONDS:
            await self._close_gone_hosts()
            self._swept_at = mono

    async def _release_all(self) -> None:
        """Shutting down: cancel what still runs and hand its rows back to the queue."""
        rows = list(self._running.values())
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            if self._finished:
                await self._flush()
            if rows:
                async with self._sessionmaker() as session, session.begin():
                    await session.execute(
                        update(Delivery)
                        .where(Delivery.id.in_([r.id for r in rows]),
                               Delivery.state == "pending")
                        .values(claimed_until=0.0)
                        .execution_options(synchronize_session=False)
                    )
        except _DB_ERRORS as exc:
            log.warning("delivery worker: could not hand back %d deliveries at shutdown (%s); "
                        "they are sent again when their lease runs out", len(rows), brief(exc))

    # -- claiming ---------------------------------------------------------------------------
    async def _claim(self, limit: int | None = None) -> tuple[list[_Claimed], Bodies]:
        """Claim up to `limit` due rows, never more per host than its free slots."""
        limit = min(limit or self._batch_size, self._batch_size)
        moment = self._clock()
        unavailable = select(Host.host).where(or_(Host.down_until > moment, Host.gone))
        earlier = aliased(Delivery)
        conditions = [
            Delivery.state == "pending",
            Delivery.next_attempt_at <= moment,
            Delivery.claimed_until < moment,
            Delivery.host.not_in(unavailable),
            ~exists().where(  # no earlier row about the same object to the same inbox pending
                earlier.order_key == Delivery.order_key, earlier.state == "pending",
                earlier.id < Delivery.id,
            ),
        ]
        for host in [h for h, until in self._unreachable.items() if until <= moment]:
            del self._unreachable[host]
        full = [h for h in self._host_running if self._room(h) <= 0]
        full += self.host_limits.paused(self._monotonic())
        full += self._unreachable
        if full:
            conditions.append(Delivery.host.not_in(full))
        held = [*self._running, *(r.row.id for r in self._finished)]
        if held:
            # Our own rows, even when a jump of the wall clock made their lease look expired.
            conditions.append(Delivery.id.not_in(held))
        # Fair across hosts: every host's first row before any host's second (round robin by
        # per-host rank), and hosts that are failing (failures recorded, no success since)
        # after all others and one row at a time, as a probe. However many rows wait for dead
        # hosts, a healthy host's new row is in the next claim.
        # A join, not `host IN (SELECT …)`: PostgreSQL ran that as a scan of `hosts` per row
        # (30 s a claim with 50,000 rows due).
        failing = func.coalesce(Host.failures, 0) > 0
        ranked = (
            select(
                Delivery.id,
                func.row_number()
                .over(partition_by=Delivery.host,
                      order_by=(Delivery.next_attempt_at, Delivery.id))
                .label("rank"),
                failing.label("failing"),
            )
            .select_from(Delivery)
            .outerjoin(Host, Host.host == Delivery.host)
            .where(*conditions)
            .subquery()
        )
        async with self._sessionmaker() as session, session.begin():
            # The LIMIT sits on the outer query so that rows other workers hold (SKIP LOCKED)
            # are passed over instead of using up the claim.
            query = (
                select(Delivery.id, Delivery.host)
                .join(ranked, ranked.c.id == Delivery.id)
                .where(ranked.c.rank <= case((ranked.c.failing, 1), else_=self._per_host))
                .order_by(ranked.c.failing, ranked.c.rank, Delivery.next_attempt_at,
                          Delivery.id)
                # Again on the row itself: PostgreSQL re-checks these on the row it locks, so a row
                # another worker claimed and committed after our snapshot is passed over (the
                # subquery's snapshot still saw it unclaimed).
                .where(Delivery.state == "pending", Delivery.claimed_until < moment)
                .limit(limit)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True, of=Delivery)
            taken: Counter[str] = Counter()
            ids: list[int] = []
            for row_id, host in (await session.execute(query)).all():
                if taken[host] < self._room(host):
                    taken[host] += 1
                    ids.append(row_id)
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
                ).where(Delivery.id.in_(ids)).order_by(Delivery.next_attempt_at, Delivery.id)
            )
            order = {row_id: n for n, row_id in enumerate(ids)}  # launched in claim order
            rows = sorted((_Claimed(*r) for r in result.all()), key=lambda r: order[r.id])
            bodies = await self._bodies(session, {row.activity_id for row in rows})
            await self._signers.learn(session, (row.host for row in rows))
        return rows, bodies

    def _room(self, host: str) -> int:
        """Slots `host` has free under its adaptive limit."""
        return self.host_limits.limit(host, self._monotonic()) - self._host_running[host]

    async def _bodies(self, session: AsyncSession, activity_ids: set[int]) -> Bodies:
        bodies: Bodies = {}
        found = await session.execute(
            select(
                OutboundActivity.id, OutboundActivity.body, Actor.id, Actor.key_id,
                Actor.private_key_pem, Actor.uri, Actor.assertion_private_pem,
            )
            .join(Actor, Actor.id == OutboundActivity.actor_id)
            .where(OutboundActivity.id.in_(activity_ids))
        )
        for activity_id, body, actor_id, key_id, private_pem, uri, ed25519_pem in found.all():
            if key_id is None or private_pem is None:
                continue  # only local actors sign; _send fails such rows with a reason
            signer = self._signers.of_actor(actor_id, uri, key_id, private_pem, ed25519_pem)
            bodies[activity_id] = (body.encode(), signer)
        return bodies

    # -- sending ----------------------------------------------------------------------------
    async def _send(self, row: _Claimed, bodies: Bodies) -> _Result:
        if self._host_policy is not None:
            try:
                refusal = await self._host_policy(row.host)
            except _DB_ERRORS as exc:
                retry = Outcome("pending", self._clock() + 5.0, host_ok=True)
                return _Result(row, retry, None, f"domain policy unavailable: {brief(exc)}",
                               neutral=True, attempted=False)
            if refusal is not None:
                dropped = Outcome("dropped", self._clock(), host_ok=True)
                return _Result(row, dropped, None, refusal, neutral=True)
        if row.activity_id not in bodies:
            failed = Outcome("failed", self._clock(), host_ok=True)
            return _Result(row, failed, None, "the signing actor has no private key", neutral=True)
        if self._unreachable.get(row.host, 0.0) > self._clock():
            # Claimed before its host refused a connection: not signed, not sent, not counted.
            later = Outcome("pending", self._clock(), host_ok=False)
            return _Result(row, later, None, "not sent: the host is unreachable", neutral=True,
                           attempted=False)
        body, signer = bodies[row.activity_id]
        key = self._signers.key(row.host, signer)
        status: int | None = None
        retry_after: float | None = None
        error: str | None = None
        sent_at = self._monotonic()
        unreachable = False
        try:
            response = await self._client.post_activity(row.inbox_url, body, sign_as=key)
            status, retry_after = response.status, response.retry_after
            if status >= 300:
                error = f"HTTP {status}: {response.body_excerpt}"[:500]
        except DestinationRefused as exc:
            # The address guard (SECURITY 10) will refuse it every time: fail now, not in 7 days.
            failed = Outcome("failed", self._clock(), host_ok=True)
            return _Result(row, failed, None, f"refused: {exc.reason}"[:500], neutral=True)
        except FetchError as exc:
            error = exc.reason[:500]
            if isinstance(exc, ConnectFailed):
                unreachable = True
                self._unreachable[row.host] = self._clock() + breaker_pause(1, unreachable=True)
        self.host_limits.answered(row.host, sent_at=sent_at, now=self._monotonic(),
                                  status=status, retry_after=retry_after)
        outcome = decide(
            status=status, attempts=row.attempts + 1, created_at=row.created_at,
            now=self._clock(), retry_after=retry_after, shared_inbox=row.shared,
            unreachable=unreachable, rng=self._rng,
        )
        return _Result(row, outcome, status, error)

    # -- recording --------------------------------------------------------------------------
    async def _record(self, results: list[_Result]) -> None:
        moment = self._clock()
        updates = [
            {
                "id": r.row.id,
                "state": r.outcome.state,
                "attempts": r.row.attempts + (1 if r.attempted else 0),
                "next_attempt_at": r.outcome.next_attempt_at,
                "claimed_until": 0.0,
                "last_status": r.status,
                "last_error": r.error,
                "done_at": moment if r.outcome.state != "pending" else None,
            }
            for r in results
        ]
        by_host: dict[str, list[Outcome]] = {}
        for r in results:
            if not r.neutral:
                by_host.setdefault(r.row.host, []).append(r.outcome)
        async with self._sessionmaker() as session, session.begin():
            await session.execute(update(Delivery), updates)
            gone = await self._update_hosts(session, by_host, moment)
        for r in results:  # counted once recorded: a failed commit is recorded again later
            if r.attempted:
                metrics.delivery_outcome(r.outcome.state)
        if gone:
            metrics.hosts_marked_dead(gone)
            await self._close_gone_hosts()

    async def _close_gone_hosts(self) -> None:
        """Close the pending rows of hosts marked gone: never claimed, they would wait forever."""
        held = [*self._running, *(r.row.id for r in self._finished)]
        statement = (
            update(Delivery)
            .where(
                Delivery.state == "pending",
                Delivery.host.in_(select(Host.host).where(Host.gone)),
            )
            .values(state="failed", last_error=GONE_REASON, done_at=self._clock(),
                    claimed_until=0.0)
            .execution_options(synchronize_session=False)
        )
        if held:
            statement = statement.where(Delivery.id.not_in(held))
        async with self._sessionmaker() as session, session.begin():
            closed = (await session.execute(statement)).rowcount  # type: ignore[attr-defined]
        if closed:
            metrics.delivery_outcome("host_gone", closed)
            log.info("closed %d deliveries to gone hosts", closed)

    async def _defer_paused_hosts(self) -> None:
        """Move the due rows of paused hosts to the end of the pause. The claim walks every due
        row (`ix_deliveries_due`); with 1,000 dead hosts most of a large queue is theirs, and
        new rows for them arrive due at once."""
        moment = self._clock()
        until = select(Host.down_until).where(Host.host == Delivery.host).scalar_subquery()
        statement = (
            update(Delivery)
            .where(
                Delivery.state == "pending",
                Delivery.next_attempt_at <= moment,
                Delivery.host.in_(select(Host.host).where(Host.down_until > moment)),
            )
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )
        async with self._sessionmaker() as session, session.begin():
            await session.execute(statement)

    async def _update_hosts(
        self, session: AsyncSession, by_host: dict[str, list[Outcome]], moment: float
    ) -> int:
        """Record host health; return how many hosts were just marked gone."""
        if not by_host:
            return 0
        known = {
            h.host: h
            for h in (
                await session.execute(select(Host).where(Host.host.in_(list(by_host))))
            ).scalars()
        }
        newly_gone = 0
        for host, outcomes in by_host.items():
            record = known.get(host)
            healthy = any(o.host_ok for o in outcomes) and not any(o.host_gone for o in outcomes)
            if record is None:
                if healthy:
                    continue  # a healthy host needs no row: only failures are remembered
                record = Host(host=host, failures=0, down_until=0.0, gone=False)
                session.add(record)
            if any(o.host_gone for o in outcomes):
                newly_gone += 0 if record.gone else 1
                record.gone = True
                record.last_failure_at = moment
            elif any(o.host_ok for o in outcomes):
                self._unreachable.pop(host, None)
                record.failures = 0
                record.down_until = 0.0
                record.last_success_at = moment
            else:
                record.failures = (record.failures or 0) + 1
                record.last_failure_at = moment
                pause = breaker_pause(record.failures,
                                      unreachable=any(o.host_unreachable for o in outcomes))
                if pause:
                    record.down_until = moment + pause
                    # From now on `hosts` keeps its rows out of claims: a list of 1,000 names
                    # in the claim's NOT IN costs more than the whole scan (PostgreSQL).
                    self._unreachable.pop(host, None)
                    log.warning("host %s failing; pausing deliveries for %.0fs", host, pause)
        return newly_gone
