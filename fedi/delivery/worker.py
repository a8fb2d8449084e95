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
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import case, exists, func, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from fedi import metrics
from fedi.activitypub.client import (
    ConnectFailed,
    DestinationRefused,
    FederationClient,
    SignedAhead,
)
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
RECORD_SECONDS = 0.25  # results wait at most about this long to be recorded
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


@dataclass(frozen=True)
class _Result:
    row: _Claimed
    outcome: Outcome
    status: int | None
    error: str | None
    neutral: bool = False  # says nothing about the host's health (refused before sending)
    attempted: bool = True  # False: released untried (e.g. the domain policy was unavailable)


Bodies = dict[int, tuple[bytes, Signer]]


@dataclass
class _Wave:
    """Rows launched together. The first of them to be sent signs all of them back to back:
    measured in `fedi serve` (bench.serve_fanout), an RSA signature between a delivery's other
    work cost 286-360 µs, one of a run of signatures 250-267 µs (its code and tables stay in
    the CPU's caches)."""

    members: list[tuple[_Claimed, Bodies]]
    signed: dict[int, SignedAhead | None] | None = None  # by row id, once signed


# PostgreSQL, for the claim's transaction only. The claim ranks every due row; planned with
# statistics from when the queue was small (a fan-out or a relay to 1,000 servers adds
# thousands of rows between two autovacuum runs), a nested loop re-ran the ranking for every
# row: 1.2 s with 1,001 due rows and 11 s with more, while a healthy server's post waited
# (bench.dead_hosts). Hash joins cost the same whatever the statistics say. A custom plan per
# claim: the generic plan of a prepared statement does not know how many rows are due.
_PLAN_THE_CLAIM = text("SELECT set_config('enable_nestloop', 'off', true), "
                       "set_config('plan_cache_mode', 'force_custom_plan', true)")


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
        # Rows are claimed ahead: up to `concurrency` more than the slots, so a freed slot is
        # refilled from memory, and the queue is asked once per ~`concurrency` deliveries,
        # not once per few (a claim walks every due row). Claimed again when fewer than
        # `_refill_at` wait; results are recorded in groups of `_record_at`.
        self._ahead = self._concurrency
        self._refill_at = max(1, self._concurrency // 8)
        self._record_at = max(1, self._concurrency // 4)
        self._running: dict[int, _Claimed] = {}  # sending now
        self._ready: deque[tuple[_Claimed, Bodies]] = deque()  # claimed, waiting for a slot
        self._host_running: Counter[str] = Counter()  # rows in hand per host: running or ready
        self._finished: list[_Result] = []  # sent, not yet recorded
        self._tasks: set[asyncio.Task[None]] = set()
        self._progress = asyncio.Event()  # a delivery finished, or new work was committed
        # The last claim found less than it asked for: claim again only once enough finished
        # (their hosts' slots and order keys free) or new work was committed, not at every
        # result (an empty claim costs as much as a full one).
        self._short = False
        self._finished_since_claim = 0
        self._new_work = False
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
        return await self._pump(None, 0.5)

    async def run(
        self, stop: asyncio.Event, wake: asyncio.Event | None = None, idle_seconds: float = 0.5
    ) -> None:
        """Deliver until stop is set; a database outage is waited out, not fatal. `wake` is set
        when new deliveries are committed."""
        forward = asyncio.create_task(self._forward(wake)) if wake is not None else None
        try:
            await self._pump(stop, idle_seconds)
        finally:
            if forward is not None:
                forward.cancel()

    async def _forward(self, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            self._new_work = True
            self._progress.set()

    async def _pump(self, stop: asyncio.Event | None, idle_seconds: float) -> int:
        attempted = 0
        self._short = False
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
                wants = not stopping and self._wants_claim()
                if self._finished and (
                    wants or len(self._finished) >= self._record_at or not self._running
                    or stopping or self._monotonic() - flushed_at > RECORD_SECONDS
                ):
                    await self._flush()
                    flushed_at = self._monotonic()
                if wants:
                    claimed = await self._claim_ahead()
                    attempted += claimed
                if not stopping:
                    await self._launch()
                pause = 0.0
            except _DB_ERRORS as exc:
                if stop is None:
                    raise
                pause = min(5.0, max(0.25, pause * 2))
                log.warning("delivery worker: database unavailable (%s); retrying in %.1fs",
                            brief(exc), pause)
            idle = not self._running and not self._finished and not self._ready
            if stop is None and idle and claimed == 0:
                return attempted
            if stopping and (idle or (stop_by is not None and self._monotonic() > stop_by)):
                await self._release_all()
                return attempted
            if pause:
                await asyncio.sleep(pause)
                continue
            self._progress.clear()
            if (self._finished and (len(self._finished) >= self._record_at
                                    or not self._running)) or self._wants_claim():
                continue  # results or work arrived while we claimed or recorded
            try:
                await asyncio.wait_for(self._progress.wait(), timeout=idle_seconds)
            except TimeoutError:
                self._short = False  # polling: rows may have come due

    def _wants_claim(self) -> bool:
        held = len(self._running) + len(self._ready)
        if not held:
            return not self._short or self._new_work or self._finished_since_claim > 0
        room = self._concurrency + self._ahead - held
        if room < self._refill_at or len(self._ready) >= self._refill_at:
            return False
        if not self._short or self._new_work:
            return True
        return self._finished_since_claim >= max(1, min(self._refill_at,
                                                         len(self._running) // 4))

    async def _claim_ahead(self) -> int:
        room = self._concurrency + self._ahead - len(self._running) - len(self._ready)
        self._new_work = False
        self._finished_since_claim = 0
        rows, bodies = await self._claim(room)
        self._short = len(rows) < min(room, self._batch_size)
        for row in rows:
            self._ready.append((row, bodies))
            self._host_running[row.host] += 1
        return len(rows)

    async def _launch(self) -> None:
        """Start claimed rows in the free slots, a wave at a time."""
        while self._ready and len(self._running) < self._concurrency:
            wave = _Wave([])
            while (self._ready and len(self._running) < self._concurrency
                   and len(wave.members) < LAUNCH_WAVE):
                row, bodies = self._ready.popleft()
                wave.members.append((row, bodies))
                self._running[row.id] = row
                task = asyncio.create_task(self._deliver(row, bodies, wave))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if len(wave.members) == LAUNCH_WAVE:
                # Signing is synchronous CPU work: started all at once, every request would be
                # signed before the first one reached the network. In waves, the event loop
                # gets to send the first requests while the next ones are signed.
                await asyncio.sleep(0)

    async def _deliver(self, row: _Claimed, bodies: Bodies, wave: _Wave) -> None:
        try:
            result = await self._send(row, bodies, wave)
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
        self._finished_since_claim += 1
        self._progress.set()

    def _forget(self, row: _Claimed) -> None:
        self._running.pop(row.id, None)
        self._host_running[row.host] -= 1
        if self._host_running[row.host] <= 0:
            del self._host_running[row.host]

    def _held(self) -> list[int]:
        """Ids of the rows this worker holds: running, claimed ahead, or not yet recorded."""
        return [*self._running, *(row.id for row, _ in self._ready),
                *(r.row.id for r in self._finished)]

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
        holding = bool(self._running or self._ready or self._finished)
        if holding and mono - self._renewed_at >= self._lease / 3:
            held = self._held()
            async with self._sessionmaker() as session, session.begin():
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(held), Delivery.state == "pending")
                    .values(claimed_until=self._clock() + self._lease)
                    .execution_options(synchronize_session=False)
                )
            self._renewed_at = mono
        elif not holding:
            self._renewed_at = mono
        if self._deferred_at is None or mono - self._deferred_at >= DEFER_SECONDS:
            await self._defer_paused_hosts()
            self._deferred_at = mono
        if self._swept_at is None or mono - self._swept_at >= SWEEP_SECONDS:
            await self._close_gone_hosts()
            self._swept_at = mono

    async def _release_all(self) -> None:
        """Shutting down: cancel what still runs and hand its rows (and those claimed ahead)
        back to the queue."""
        rows = [*self._running.values(), *(row for row, _ in self._ready)]
        while self._ready:
            self._forget(self._ready.popleft()[0])
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
        held = self._held()
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
                select(Delivery.id, Delivery.inbox_url, Delivery.host, Delivery.attempts,
                       Delivery.created_at, Delivery.activity_id)
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
                await session.execute(_PLAN_THE_CLAIM)
            taken: Counter[str] = Counter()
            rows: list[_Claimed] = []
            for found in (await session.execute(query)).all():
                row = _Claimed(*found)
                if taken[row.host] < self._room(row.host):
                    taken[row.host] += 1
                    rows.append(row)  # launched in claim order
            if not rows:
                return [], {}
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_([row.id for row in rows]))
                .values(claimed_until=moment + self._lease)
                .execution_options(synchronize_session=False)
            )
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
    async def _send(self, row: _Claimed, bodies: Bodies, wave: _Wave) -> _Result:
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
        unsent = self._not_sent(row, bodies)
        if unsent == "no key":
            failed = Outcome("failed", self._clock(), host_ok=True)
            return _Result(row, failed, None, "the signing actor has no private key", neutral=True)
        if unsent == "unreachable":
            # Claimed before its host refused a connection: not signed, not sent, not counted.
            later = Outcome("pending", self._clock(), host_ok=False)
            return _Result(row, later, None, "not sent: the host is unreachable", neutral=True,
                           attempted=False)
        if unsent == "wait":
            # Claimed ahead before its host asked us to wait (Retry-After): not sent now.
            wait = Outcome("pending", self._clock(), host_ok=True)
            return _Result(row, wait, None, "not sent: the host asked us to wait", neutral=True,
                           attempted=False)
        body, signer = bodies[row.activity_id]
        key = self._signers.key(row.host, signer)
        ahead = self._signed_in(wave, row)
        status: int | None = None
        retry_after: float | None = None
        error: str | None = None
        sent_at = self._monotonic()
        unreachable = False
        try:
            response = await self._client.post_activity(row.inbox_url, body, sign_as=key,
                                                        ahead=ahead)
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
        # Only a shared inbox's 410 says the whole host is gone: asked then, not in every claim.
        try:
            shared = status == 410 and await self._is_shared_inbox(row.inbox_url)
        except _DB_ERRORS as exc:  # sent, but what its answer means is asked again later
            retry = Outcome("pending", self._clock() + 5.0, host_ok=True)
            return _Result(row, retry, status, f"{error} (database unavailable: {brief(exc)})",
                           neutral=True)
        outcome = decide(
            status=status, attempts=row.attempts + 1, created_at=row.created_at,
            now=self._clock(), retry_after=retry_after, shared_inbox=shared,
            unreachable=unreachable, rng=self._rng,
        )
        return _Result(row, outcome, status, error)

    def _not_sent(
        self, row: _Claimed, bodies: Bodies
    ) -> Literal["no key", "unreachable", "wait"] | None:
        """Why `row` is neither signed nor sent now, known without asking anyone; None: send."""
        if row.activity_id not in bodies:
            return "no key"
        if self._unreachable.get(row.host, 0.0) > self._clock():
            return "unreachable"
        if self.host_limits.limit(row.host, self._monotonic()) == 0:
            return "wait"
        return None

    def _signed_in(self, wave: _Wave, row: _Claimed) -> SignedAhead | None:
        """`row`'s first knock, signed with the rest of its wave that may still be sent."""
        if wave.signed is None:
            wave.signed = {}
            for member, bodies in wave.members:
                if self._not_sent(member, bodies) is not None:
                    continue  # _send will not send it: not signed
                body, signer = bodies[member.activity_id]
                wave.signed[member.id] = self._client.signed_ahead(
                    member.inbox_url, body, sign_as=self._signers.key(member.host, signer))
        return wave.signed.pop(row.id, None)

    async def _is_shared_inbox(self, inbox_url: str) -> bool:
        async with self._sessionmaker() as session:
            found = await session.execute(
                select(Actor.id).where(Actor.shared_inbox == inbox_url).limit(1)
            )
            return found.first() is not None

    # -- recording --------------------------------------------------------------------------
    async def _record(self, results: list[_Result]) -> None:
        moment = self._clock()
        # Rows that end (done, failed, dropped) mostly share their new values: one
        # UPDATE … WHERE id IN (…) per set of values, not a statement per row. Rows that wait
        # for a retry each have their own instant.
        ended: dict[tuple[str, int, int | None, str | None], list[int]] = {}
        retries: list[dict[str, object]] = []
        for r in results:
            attempts = r.row.attempts + (1 if r.attempted else 0)
            if r.outcome.state == "pending":
                retries.append({
                    "id": r.row.id, "state": "pending", "attempts": attempts,
                    "next_attempt_at": r.outcome.next_attempt_at, "claimed_until": 0.0,
                    "last_status": r.status, "last_error": r.error, "done_at": None,
                })
            else:
                key = (r.outcome.state, attempts, r.status, r.error)
                ended.setdefault(key, []).append(r.row.id)
        by_host: dict[str, list[Outcome]] = {}
        for r in results:
            if not r.neutral:
                by_host.setdefault(r.row.host, []).append(r.outcome)
        async with self._sessionmaker() as session, session.begin():
            for (state, attempts, status, error), ids in ended.items():
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(ids))
                    .values(state=state, attempts=attempts, next_attempt_at=moment,
                            claimed_until=0.0, last_status=status, last_error=error,
                            done_at=moment)
                    .execution_options(synchronize_session=False)
                )
            if retries:
                await session.execute(update(Delivery), retries)
            gone = await self._update_hosts(session, by_host, moment)
        for r in results:  # counted once recorded: a failed commit is recorded again later
            if r.attempted:
                metrics.delivery_outcome(r.outcome.state)
        if gone:
            metrics.hosts_marked_dead(gone)
            await self._close_gone_hosts()

    async def _close_gone_hosts(self) -> None:
        """Close the pending rows of hosts marked gone: never claimed, they would wait forever."""
        held = self._held()
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
        answered = [
            host for host, outcomes in by_host.items()
            if any(o.host_ok for o in outcomes) and not any(o.host_gone for o in outcomes)
        ]
        if answered:
            # Every host that answered like a working server, in one statement. A healthy host
            # needs no row (only failures are remembered), so hosts without one stay without.
            for host in answered:
                self._unreachable.pop(host, None)
            await session.execute(
                update(Host)
                .where(Host.host.in_(answered))
                .values(failures=0, down_until=0.0, last_success_at=moment)
                .execution_options(synchronize_session=False)
            )
        fine = set(answered)
        troubled = [host for host in by_host if host not in fine]
        if not troubled:
            return 0
        known = {
            h.host: h
            for h in (await session.execute(select(Host).where(Host.host.in_(troubled))))
            .scalars()
        }
        newly_gone = 0
        for host in troubled:
            outcomes = by_host[host]
            record = known.get(host)
            if record is None:
                record = Host(host=host, failures=0, down_until=0.0, gone=False)
                session.add(record)
            if any(o.host_gone for o in outcomes):
                newly_gone += 0 if record.gone else 1
                record.gone = True
                record.last_failure_at = moment
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
