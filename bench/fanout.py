"""Fan-out: one activity delivered to N fake remote shared inboxes, each on its own host.

    python -m bench.fanout [--n 2000] [--rtt-ms 100] [--database sqlite|postgres] [--ed25519]

The fake inboxes run in a separate process (bench.fake_inboxes) and answer 202 after the
simulated round trip. This process enqueues ONE activity to the N inboxes in one transaction,
then times `DeliveryWorker.run_once()` until no row is due, and reports wall time, deliveries/s
and CPU per delivery, next to the RSA-2048 signing cost measured in the same run.
Target: N=2,000 at 100 ms in <= 2 s on one core.

With --ed25519, a second activity then goes to the same N hosts, now known as peers whose
actors publish an Ed25519 Multikey, so the worker signs with RFC 9421 `ed25519`; CPU per
delivery for those peers is printed next to the RSA (draft-cavage) figure.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from sqlalchemy import func, insert, select

import fedi.activitypub.client as fedi_client
from bench.common import (
    BenchDatabase,
    CpuWindow,
    GcTally,
    describe_machine,
    other_cpu,
    pin,
    raise_nofile,
    report,
    run,
    throwaway_database,
    timed_sync,
)
from fedi.activitypub import activities, integrity
from fedi.activitypub.httpsig import sign_request
from fedi.activitypub.keys import SigningKey, generate_rsa_keypair, load_private_key
from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.delivery.enqueue import enqueue
from fedi.delivery.worker import DeliveryWorker
from fedi.services import Services, build_services
from fedi.store.migrate import migrate
from fedi.store.models import Actor, Delivery
from fedi.urls import Urls, new_id

TARGET_N = 2000
TARGET_RTT_MS = 100.0
TARGET_SECONDS = 2.0
MAX_ROUNDS = 1000  # run_once() calls; bounds the delivery loop in count
NOTE_TEXT = (
    "Benchmark post: a paragraph of ordinary length, so that the body and its digest cost "
    "what a real group relay costs. " * 3
)


@dataclass
class Options:
    n: int
    rtt_ms: float
    database: str
    concurrency: int
    per_host: int
    batch_size: int
    cpu: int | None
    uvloop: bool
    profile: bool
    sign_samples: int
    timeout: float
    pg_url: str | None
    nice: int
    gc_freeze: bool
    gc_threshold: tuple[int, ...] | None
    ed25519: bool = False


@dataclass
class Phase:
    """Wall and CPU seconds spent inside one wrapped coroutine function."""

    calls: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def wrap(self, func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return await func(*args, **kwargs)
            finally:
                self.calls += 1
                self.wall += time.perf_counter() - w0
                self.cpu += time.process_time() - c0

        return timed


@dataclass
class SignTally:
    """CPU spent in fedi's sign_request during the run (the client module's reference)."""

    calls: int = 0
    cpu: float = 0.0
    original: Callable[..., dict[str, str]] = field(default=sign_request)

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        c0 = time.process_time()
        try:
            return self.original(*args, **kwargs)
        finally:
            self.calls += 1
            self.cpu += time.process_time() - c0


# -- the fake inbox process ------------------------------------------------------------------------
class FakeInboxes:
    def __init__(
        self, n: int, rtt_ms: float, cpu: int | None, timeout: float, nice: int = 0
    ) -> None:
        command = [sys.executable, "-m", "bench.fake_inboxes", "--n", str(n),
                   "--rtt-ms", str(rtt_ms), "--max-seconds", str(timeout + 300),
                   "--nice", str(nice)]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=10)
            raise RuntimeError("bench.fake_inboxes exited before listening")
        started = json.loads(line)
        self.ports: list[int] = started["ports"]
        self.control: int = started["control"]

    @property
    def inboxes(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/inbox" for port in self.ports]

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{self.control}/stats", timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            data: dict[str, Any] = await resp.json()
            return data

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # EOF tells it to exit
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- signing cost, measured in this process ------------------------------------------------------
def sign_costs(group: Actor, body: bytes, inbox: str, samples: int) -> tuple[float, float]:
    """(raw RSA-2048 PKCS1v15 SHA-256 sign, fedi's whole sign_request) in CPU µs per call."""
    assert group.key_id and group.private_key_pem
    key = SigningKey(group.key_id, group.private_key_pem)
    private = key.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    base = (
        b"(request-target): post /inbox\nhost: 127.0.0.1:40000\n"
        b"date: Mon, 01 Jan 2024 00:00:00 GMT\n"
        b"digest: SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        b"content-type: application/activity+json"
    )
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    raw_us, _ = timed_sync(lambda: private.sign(base, pkcs1, sha256), samples)
    headers = {"Content-Type": "application/activity+json"}
    full_us, _ = timed_sync(
        lambda: sign_request("cavage", "POST", inbox, headers, body, key), samples
    )
    return raw_us, full_us


def ed25519_sign_cost(group: Actor, samples: int) -> float:
    """The bare Ed25519 signature over a typical RFC 9421 signature base, CPU µs per call."""
    assert group.assertion_private_pem
    private = load_private_key(group.assertion_private_pem)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    base = (
        b'"@method": POST\n"@target-uri": http://127.0.0.1:40000/inbox\n'
        b'"@authority": 127.0.0.1:40000\n"date": Mon, 01 Jan 2024 00:00:00 GMT\n'
        b'"content-digest": sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:\n'
        b'"@signature-params": ("@method" "@target-uri" "@authority" "date" "content-digest")'
        b';created=1704067200;keyid="http://127.0.0.1:9/groups/benchgroup/ed25519-key"'
        b';alg="ed25519"'
    )
    raw_us, _ = timed_sync(lambda: private.sign(base), samples)
    return raw_us


# -- the Ed25519 phase (--ed25519) ---------------------------------------------------------------
@dataclass
class Ed25519Phase:
    window: CpuWindow
    tally: SignTally
    delivered: int
    sign_us: float


async def make_ed25519_peers(services: Services, inboxes: list[str]) -> None:
    """A remote actor on every fake host, publishing an Ed25519 Multikey (as Fedify does)."""
    _, public_pem = generate_rsa_keypair()
    multibase = integrity.generate_ed25519_keypair()[1]
    rows = []
    for inbox in inboxes:
        origin = inbox.removesuffix("/inbox")
        uri = f"{origin}/users/peer"
        rows.append({
            "uri": uri, "type": "Person", "local": False, "username": "peer",
            "domain": origin.split("://", 1)[1], "inbox": f"{uri}/inbox", "shared_inbox": inbox,
            "key_id": f"{uri}#main-key", "public_key_pem": public_pem,
            "assertion_key_id": f"{uri}#ed25519-key", "assertion_public_key": multibase,
            "manually_approves_followers": False, "fetched_at": time.time(),
            "key_refreshed_at": 0.0, "created_at": time.time(),
        })
    async with services.sessionmaker() as session, session.begin():
        await session.execute(insert(Actor), rows)


async def ed25519_phase(
    services: Services, group: Actor, fake: FakeInboxes, options: Options
) -> Ed25519Phase:
    """Deliver a second activity to the same hosts, now Ed25519 peers, and time it alone."""
    await make_ed25519_peers(services, fake.inboxes)
    activity = relay_activity(services.urls, group)
    async with services.sessionmaker() as session, session.begin():
        activity_id = await enqueue(session, group, activity, fake.inboxes)
    assert activity_id is not None  # outside an inbox batch the outbox row is written at once
    await services.client.close()  # new connections, as the RSA phase had
    worker = DeliveryWorker(
        services.sessionmaker, services.client, concurrency=options.concurrency,
        per_host=options.per_host, batch_size=options.batch_size,
    )
    tally = SignTally()
    vars(fedi_client)["sign_request"] = tally
    window = CpuWindow()
    deadline = time.monotonic() + options.timeout
    try:
        with window.measure():
            for _ in range(MAX_ROUNDS):
                if await worker.run_once() == 0 or time.monotonic() > deadline:
                    break
    finally:
        vars(fedi_client)["sign_request"] = sign_request
    async with services.sessionmaker() as session:
        delivered = (await session.execute(
            select(func.count()).select_from(Delivery)
            .where(Delivery.activity_id == activity_id, Delivery.state == "done")
        )).scalar_one()
    return Ed25519Phase(window, tally, delivered, ed25519_sign_cost(group, options.sign_samples))


# -- setup ---------------------------------------------------------------------------------------
async def prepare(services: Services) -> Actor:
    await migrate(services.engine)
    await services.start()
    async with services.sessionmaker() as session, session.begin():
        await create_user(session, services.urls, "bench")
        group = await create_group(session, services.urls, "benchgroup", owner="bench")
    return group


def relay_activity(urls: Urls, group: Actor) -> dict[str, Any]:
    """What a group relays when a member posts (FEP-1b12 Announce of a Create)."""
    published = time.time()
    post_uri = urls.post(new_id())
    author = urls.user("bench")
    note = {
        "id": post_uri, "type": "Note", "attributedTo": author,
        "content": f"<p>{NOTE_TEXT}</p>", "published": activities.iso(published),
        "to": ["https://www.w3.org/ns/activitystreams#Public", group.uri],
        "cc": [Urls.followers(group.uri)], "audience": group.uri, "url": post_uri,
    }
    create = activities.create(urls.activity(new_id()), note)
    to, cc = activities.public_addressing(group.uri, Urls.followers(group.uri))
    return activities.announce(
        urls.activity(new_id()), group.uri, create, to=to, cc=cc, published=published
    )


async def delivery_states(services: Services) -> Mapping[str, int]:
    async with services.sessionmaker() as session:
        rows = await session.execute(
            select(Delivery.state, func.count()).group_by(Delivery.state)
        )
        return {state: count for state, count in rows.all()}


# -- the benchmark -------------------------------------------------------------------------------
async def bench(options: Options, db: BenchDatabase, fake: FakeInboxes) -> None:
    settings = Settings(
        base_url="http://127.0.0.1:9",  # never served: only ids and key ids are built from it
        database_url=db.url,
        allow_private_addresses=True,
        delivery_concurrency=options.concurrency,
        delivery_per_host=options.per_host,
    )
    services = build_services(settings)
    try:
        group = await prepare(services)
        activity = relay_activity(services.urls, group)
        body = json.dumps(activity).encode()
        raw_us, full_us = sign_costs(group, body, fake.inboxes[0], options.sign_samples)

        enqueue_window = CpuWindow()
        with enqueue_window.measure():
            async with services.sessionmaker() as session, session.begin():
                await enqueue(session, group, activity, fake.inboxes)

        worker = DeliveryWorker(
            services.sessionmaker, services.client, concurrency=options.concurrency,
            per_host=options.per_host, batch_size=options.batch_size,
        )
        claim, record = Phase(), Phase()
        # Wrap the worker's phases on this instance only, to split where the time goes.
        vars(worker)["_claim"] = claim.wrap(worker._claim)
        vars(worker)["_record"] = record.wrap(worker._record)
        tally = SignTally()
        vars(fedi_client)["sign_request"] = tally  # the name client.py calls
        # The key is parsed once per process and then cached (keys.load_private_key), as in a
        # long-running worker; parse it before the clock starts.
        assert group.private_key_pem is not None
        _ = SigningKey(group.key_id or "", group.private_key_pem).private_key

        # CPU-time clock: attribution is not skewed by other processes taking the core.
        profiler = cProfile.Profile(time.process_time) if options.profile else None
        attempted = rounds = 0
        window = CpuWindow(pids=[fake.process.pid], watch_postgres=db.kind == "postgres")
        deadline = time.monotonic() + options.timeout
        if options.gc_freeze:
            gc.collect()
            gc.freeze()  # what-if: move everything alive now out of the collector's sight
        if options.gc_threshold:
            gc.set_threshold(*options.gc_threshold)  # what-if: collect less often
        started = time.monotonic()
        gc_tally = GcTally()
        with window.measure(), gc_tally.measure():
            if profiler is not None:
                profiler.enable()
            while rounds < MAX_ROUNDS and time.monotonic() < deadline:
                done = await worker.run_once()
                rounds += 1
                attempted += done
                if done == 0:
                    break
            if profiler is not None:
                profiler.disable()
        vars(fedi_client)["sign_request"] = sign_request

        states = await delivery_states(services)
        received = await fake.stats()
        ed = await ed25519_phase(services, group, fake, options) if options.ed25519 else None
    finally:
        vars(fedi_client)["sign_request"] = sign_request
        await services.close()

    n = options.n
    delivered = states.get("done", 0)
    cpu_ms = window.own * 1000 / max(delivered, 1)
    sign_ms = raw_us / 1000
    send_wall = window.wall - claim.wall - record.wall
    send_cpu = window.own - claim.cpu - record.cpu
    first = (received["first_at"] or started) - started
    last = (received["last_at"] or started) - started
    meets = (
        n >= TARGET_N and options.rtt_ms >= TARGET_RTT_MS and delivered == n
        and received["received"] == n and window.wall <= TARGET_SECONDS
    )
    applies = n >= TARGET_N and options.rtt_ms >= TARGET_RTT_MS
    report([
        ("machine", describe_machine()),
        ("database", db.kind),
        ("N (inboxes = distinct hosts)", n),
        ("simulated RTT", f"{options.rtt_ms:g} ms"),
        ("concurrency / per host / batch", f"{options.concurrency} / {options.per_host} / "
                                           f"{options.batch_size}"),
        ("event loop", "uvloop" if options.uvloop else "asyncio (stock, as `fedi worker`)"),
        ("pinned", f"bench cpu {options.cpu}, fake inboxes cpu {other_cpu(options.cpu)}"
                   if options.cpu is not None else "no"),
        ("nice", options.nice),
        ("gc.freeze() before delivery", "yes (what-if experiment)" if options.gc_freeze else "no"),
        ("gc thresholds", gc.get_threshold()),
        ("activity body", f"{len(body)} bytes"),
        ("profiling", "ON (cProfile inflates every figure below)" if profiler else "off"),
    ], "fanout settings")
    report([
        ("enqueue (1 activity, N rows)", f"{enqueue_window.wall * 1000:.0f} ms wall, "
                                         f"{enqueue_window.own * 1000:.0f} ms CPU"),
        ("run_once() calls", f"{rounds} (attempted {attempted})"),
        ("delivery states", dict(sorted(states.items()))),
        ("POSTs received by fake inboxes", f"{received['received']} of {n} "
                                           f"({received['distinct_hosts']} distinct hosts, "
                                           f"{received['signed']} signed, max in flight "
                                           f"{received['max_in_flight']})"),
        ("POST arrivals (from start)", f"first {first * 1000:.0f} ms, last {last * 1000:.0f} ms"),
        ("wall time", f"{window.wall:.3f} s"),
        ("deliveries/s", f"{delivered / window.wall:.0f}" if window.wall else "n/a"),
        ("CPU (this process, all threads)", f"{window.own * 1000:.0f} ms "
                                            f"({window.own / window.wall:.0%} of one core; "
                                            f"user {window.own_user * 1000:.0f} ms, "
                                            f"kernel {window.own_system * 1000:.0f} ms)"),
        ("CPU ms per delivery", f"{cpu_ms:.3f}"),
        ("RSA-2048 sign (PKCS1v15 SHA-256)", f"{raw_us:.0f} µs CPU per signature "
                                             f"({options.sign_samples} samples)"),
        ("fedi sign_request (cavage)", f"{full_us:.0f} µs CPU per call"),
        ("CPU per delivery ÷ RSA sign", f"{cpu_ms / sign_ms:.2f}x"),
        ("postgres server CPU (all dbs)", f"{window.postgres * 1000:.0f} ms"
         if window.postgres is not None else "n/a (SQLite runs in this process)"),
        ("fake inboxes process CPU", f"{window.others[0] * 1000:.0f} ms"),
        ("machine CPU, both cores", f"{window.machine * 1000:.0f} ms "
                                    f"(of {2 * window.wall * 1000:.0f} ms available)"),
    ], "fanout results")
    report([
        ("claim (select + lease update)", f"{claim.wall * 1000:.0f} ms wall, "
                                          f"{claim.cpu * 1000:.0f} ms CPU, {claim.calls} calls"),
        ("send (sign + POST + wait)", f"{send_wall * 1000:.0f} ms wall, "
                                      f"{send_cpu * 1000:.0f} ms CPU"),
        ("  of which sign_request", f"{tally.cpu * 1000:.0f} ms CPU over {tally.calls} calls "
                                    f"({tally.cpu * 1e6 / max(tally.calls, 1):.0f} µs each)"),
        ("  of which the rest (HTTP, asyncio)", f"{(send_cpu - tally.cpu) * 1000:.0f} ms CPU "
                                                f"({(send_cpu - tally.cpu) * 1e6 / max(n, 1):.0f}"
                                                " µs per delivery)"),
        ("garbage collector (in the above)", gc_tally.summary()),
        ("record (bulk update + hosts)", f"{record.wall * 1000:.0f} ms wall, "
                                         f"{record.cpu * 1000:.0f} ms CPU"),
    ], "where the delivery phase went")
    target = (f"{'MET' if meets else 'NOT MET'} ({window.wall:.2f} s vs <= {TARGET_SECONDS:g} s "
              f"for N={TARGET_N} at {TARGET_RTT_MS:g} ms)")
    report([("target", target if applies else
             f"n/a (target is N>={TARGET_N} at >={TARGET_RTT_MS:g} ms)")], "verdict")
    if ed is not None:
        ed_cpu_ms = ed.window.own * 1000 / max(ed.delivered, 1)
        report([
            ("deliveries done", f"RSA peers {delivered} of {n}, Ed25519 peers {ed.delivered} "
                                f"of {n}"),
            ("wall time", f"RSA peers {window.wall:.3f} s, Ed25519 peers {ed.window.wall:.3f} s"),
            ("CPU ms per delivery", f"RSA peers {cpu_ms:.3f}, Ed25519 peers {ed_cpu_ms:.3f}"),
            ("sign_request per call", f"RSA (cavage) {full_us:.0f} µs, Ed25519 (RFC 9421) "
                                      f"{ed.tally.cpu * 1e6 / max(ed.tally.calls, 1):.0f} µs"),
            ("bare signature", f"RSA-2048 {raw_us:.0f} µs, Ed25519 {ed.sign_us:.0f} µs"),
        ], "RSA peers next to Ed25519 peers (--ed25519)")
    if profiler is not None:
        print_profile(profiler)


def print_profile(profiler: cProfile.Profile, top: int = 15) -> None:
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(top)
        lines = out.getvalue().splitlines()
        start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
        print(f"\n== profile of the delivery phase, top {top} by {order}")
        print("\n".join(lines[start:]).rstrip())


async def main_async(options: Options) -> None:
    fake = FakeInboxes(
        options.n, options.rtt_ms, other_cpu(options.cpu), options.timeout, options.nice
    )
    try:
        async with throwaway_database(options.database, "fanout", options.pg_url) as db:
            await bench(options, db, fake)
    finally:
        fake.close()


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--n", type=int, default=TARGET_N, help="inboxes, each a distinct host")
    parser.add_argument("--rtt-ms", type=float, default=TARGET_RTT_MS,
                        help="the fake inboxes answer after this many ms")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="deliveries in flight (default: N, i.e. all at once)")
    parser.add_argument("--per-host", type=int, default=8, help="deliveries in flight per host")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="rows per run_once() (default: N)")
    parser.add_argument("--cpu", type=int, default=0,
                        help="pin this process to this CPU (fake inboxes get the other); -1: no")
    parser.add_argument("--stock-loop", dest="uvloop", action="store_false",
                        help="use the stock asyncio loop (default: uvloop, as fedi worker)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the delivery phase and print the top entries")
    parser.add_argument("--sign-samples", type=int, default=500)
    parser.add_argument("--ed25519", action="store_true",
                        help="then deliver again to the same hosts as Ed25519 peers (RFC 9421 "
                             "ed25519) and print their CPU per delivery next to RSA's")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="skip gc.freeze() after set-up (fedi worker freezes, see "
                        "fedi/runtime.py)")
    parser.add_argument("--gc-threshold", default="50000,20,100", metavar="G0[,G1[,G2]]",
                        help="gc.set_threshold(...) before the delivery phase (default: "
                        "fedi worker's 50000,20,100; 'default' for Python's)")
    parser.add_argument("--nice", type=int, default=0,
                        help="priority adjustment for both processes (e.g. -10 as root, so "
                             "other work on a shared machine does not take the cores)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="stop the delivery loop after this many seconds")
    parser.add_argument("--pg-url", default=None,
                        help="PostgreSQL server to create the throwaway database on "
                             "(default $FEDI_BENCH_POSTGRES_URL or postgres@127.0.0.1:5432)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    concurrency = args.concurrency or args.n
    return Options(
        n=args.n, rtt_ms=args.rtt_ms, database=args.database, concurrency=concurrency,
        per_host=args.per_host, batch_size=args.batch_size or args.n,
        cpu=None if args.cpu < 0 else args.cpu, uvloop=args.uvloop, profile=args.profile,
        sign_samples=args.sign_samples, timeout=args.timeout, pg_url=args.pg_url,
        nice=args.nice, gc_freeze=args.gc_freeze, ed25519=args.ed25519,
        gc_threshold=tuple(int(x) for x in args.gc_threshold.split(","))
        if args.gc_threshold and args.gc_threshold != "default" else None,
    )


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    raise_nofile(2 * options.n + 1024)
    if options.nice:
        os.nice(options.nice)
    where = pin(0, options.cpu)
    if options.cpu is not None and where.startswith("not"):
        options.cpu = None
    run(lambda: main_async(options), options.uvloop)


if __name__ == "__main__":
    main()
