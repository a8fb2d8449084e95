"""Inbox: signed activities per second accepted durably by `fedi serve`, with latency.

    python -m bench.inbox [--database sqlite|postgres] [--requests N] [--concurrency C]

Starts `fedi serve --no-worker` on a free loopback port with a fresh database, serves a fake
remote actor (fetched once by fedi for its key) from this process, pre-signs every request
before the clock starts, then keeps C requests in flight with aiohttp and records each one's
latency. Afterwards it checks that `inbox_items` holds one row per request.
Target: >= 3,000 accepted/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pstats
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench import pyspy
from bench.common import (
    BenchDatabase,
    CpuWindow,
    collector_paused,
    count_rows,
    describe_machine,
    free_port,
    other_cpu,
    percentile,
    pin,
    postgres_counters,
    raise_nofile,
    renice_backends,
    report,
    run,
    throwaway_database,
)
from fedi.activitypub.httpsig import Scheme, sign_request
from fedi.activitypub.keys import SigningKey, generate_rsa_keypair
from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC, SECURITY_CONTEXT
from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.services import build_services
from fedi.store.migrate import migrate

TARGET_PER_SECOND = 3000.0
TARGET_P99 = 0.050  # seconds, at half the capacity (open loop)
GROUP = "benchgroup"
ACTOR_NAME = "bench"
REQUEST_TIMEOUT = 30.0
START_TIMEOUT = 60.0
NO_LIMIT = 1_000_000_000
NOTE_TEXT = "An ordinary message of a sentence or two, as people post in groups. " * 3


@dataclass
class Options:
    database: str
    requests: int
    warmup: int
    concurrency: int
    scheme: Scheme
    inbox: str  # "shared" | "group"
    cpu: int | None
    nice: int
    profile: bool
    py_spy: bool
    whatif: list[str]  # bench.serve_whatif options; empty: plain `python -m fedi`
    timeout: float
    pg_url: str | None
    server_workers: int = 1
    rate: float | None = None  # open-loop phase at this many requests/s; 0: half the capacity
    rate_seconds: float = 10.0


@dataclass
class Signed:
    headers: dict[str, str]
    body: bytes


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    offered: float = 0.0  # open loop: the rate requests were sent at

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)


# -- the fake remote actor -----------------------------------------------------------------------
class FakeActor:
    """One remote Person with an RSA key, served over HTTP from this process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.uri = f"{self.base}/users/{ACTOR_NAME}"
        private_pem, self.public_pem = generate_rsa_keypair()
        self.key = SigningKey(f"{self.uri}#main-key", private_pem)
        self.fetches = 0
        self._runner: web.AppRunner | None = None

    def document(self) -> dict[str, Any]:
        return {
            "@context": [AS_CONTEXT, SECURITY_CONTEXT],
            "id": self.uri,
            "type": "Person",
            "preferredUsername": ACTOR_NAME,
            "inbox": f"{self.uri}/inbox",
            "outbox": f"{self.uri}/outbox",
            "followers": f"{self.uri}/followers",
            "endpoints": {"sharedInbox": f"{self.base}/inbox"},
            "publicKey": {
                "id": self.key.key_id,
                "owner": self.uri,
                "publicKeyPem": self.public_pem,
            },
        }

    async def _actor(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.Response(
            body=json.dumps(self.document()).encode(), content_type="application/activity+json"
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(f"/users/{ACTOR_NAME}", self._actor)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def activity(self, token: str, index: int, group_uri: str) -> dict[str, Any]:
        """A Create of a Note addressed to the group; ids on the actor's host, unique."""
        note_id = f"{self.base}/notes/{token}-{index}"
        published = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {
            "@context": AS_CONTEXT,
            "id": f"{self.base}/activities/{token}-{index}",
            "type": "Create",
            "actor": self.uri,
            "published": published,
            "to": [PUBLIC, group_uri],
            "cc": [f"{self.uri}/followers"],
            "object": {
                "id": note_id, "type": "Note", "attributedTo": self.uri,
                "content": f"<p>{NOTE_TEXT}#{index}</p>", "published": published,
                "to": [PUBLIC, group_uri], "cc": [f"{self.uri}/followers"],
                "audience": group_uri,
            },
        }


def presign(
    actor: FakeActor, url: str, scheme: Scheme, count: int, group_uri: str
) -> list[Signed]:
    token = uuid.uuid4().hex[:12]
    signed: list[Signed] = []
    for index in range(count):
        body = json.dumps(actor.activity(token, index, group_uri)).encode()
        headers = sign_request(
            scheme, "POST", url, {"Content-Type": "application/activity+json"}, body, actor.key
        )
        signed.append(Signed(headers, body))
    return signed


# -- the fedi server process ---------------------------------------------------------------------
class FediServer:
    def __init__(self, db: BenchDatabase, options: Options) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = db.directory / "fedi-serve.log"
        self.profile_path: Path | None = db.directory / "serve.prof" if options.profile else None
        self.env = dict(
            os.environ,
            FEDI_BASE_URL=self.base_url,
            FEDI_DATABASE_URL=db.url,
            FEDI_ALLOW_PRIVATE_ADDRESSES="1",
            FEDI_INSTANCE_NAME="bench",
            # One sending host and no worker: admission control (per-host rate, queue depth)
            # would measure its own limits, not the inbox's capacity. bench.flood measures it.
            FEDI_INBOX_HOST_RATE=str(NO_LIMIT),
            FEDI_INBOX_HOST_BURST=str(NO_LIMIT),
            FEDI_INBOX_MAX_QUEUE=str(NO_LIMIT),
        )
        if options.whatif:
            root = str(Path(__file__).resolve().parent.parent)
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (root, self.env.get("PYTHONPATH", "")) if p
            )
        self.module = ["bench.serve_whatif", *options.whatif] if options.whatif else ["fedi"]
        self.cwd = db.directory
        self.process: subprocess.Popen[bytes] | None = None
        self.server_workers: int = options.server_workers

    def launch(self, cpu: int | None, nice: int) -> None:
        command = [sys.executable]
        if self.profile_path is not None:
            command += ["-m", "cProfile", "-o", str(self.profile_path)]
        command += ["-m", *self.module, "serve", "--no-worker", "--host", "127.0.0.1",
                    "--port", str(self.port)]
        if self.server_workers > 1:
            command += ["--workers", str(self.server_workers)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
            )
        pin(self.process.pid, cpu)
        if nice:
            os.setpriority(os.PRIO_PROCESS, self.process.pid, nice)

    async def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"fedi serve exited early:\n{self.log()}")
                try:
                    async with session.get(
                        f"{self.base_url}/.well-known/nodeinfo",
                        timeout=aiohttp.ClientTimeout(total=1),
                    ) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"fedi serve did not start in {START_TIMEOUT:g} s:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """SIGINT (graceful: uvicorn shuts down, cProfile writes its file), then kill."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


# -- the load generator --------------------------------------------------------------------------
async def fire(
    session: aiohttp.ClientSession, url: str, requests: Sequence[Signed], concurrency: int,
    limit_s: float,
) -> Outcome:
    outcome = Outcome(latencies=[0.0] * len(requests))
    indexes = iter(range(len(requests)))
    per_request = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)

    async def one_connection() -> None:
        for index in indexes:  # shared iterator: each request is sent once
            item = requests[index]
            started = time.perf_counter()
            try:
                async with session.post(
                    url, data=item.body, headers=item.headers, timeout=per_request
                ) as resp:
                    answer = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, answer = -1, repr(exc).encode()
            outcome.latencies[index] = time.perf_counter() - started
            outcome.statuses[status] += 1
            if status != 202 and len(outcome.errors) < 5:
                outcome.errors.append(f"{status}: {answer[:300].decode(errors='replace')}")

    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(one_connection() for _ in range(concurrency))), timeout=limit_s
    )
    outcome.wall = time.perf_counter() - started
    return outcome


async def fire_at_rate(
    session: aiohttp.ClientSession, url: str, requests: Sequence[Signed], rate: float,
    limit_s: float,
) -> Outcome:
    """Open loop: request i is sent at start + i / rate whether or not earlier ones were
    answered, and its latency counts from that moment (a server that falls behind is charged
    for the wait, not excused by a slower sender)."""
    outcome = Outcome(latencies=[0.0] * len(requests))
    per_request = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)

    async def one(index: int, due: float) -> None:
        item = requests[index]
        try:
            async with session.post(
                url, data=item.body, headers=item.headers, timeout=per_request
            ) as resp:
                answer = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, answer = -1, repr(exc).encode()
        outcome.latencies[index] = time.perf_counter() - due
        outcome.statuses[status] += 1
        if status != 202 and len(outcome.errors) < 5:
            outcome.errors.append(f"{status}: {answer[:300].decode(errors='replace')}")

    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for index in range(len(requests)):
        due = started + index / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    outcome.offered = len(requests) / max(time.perf_counter() - started, 1e-9)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=limit_s)
    outcome.wall = time.perf_counter() - started
    return outcome


# -- the benchmark -------------------------------------------------------------------------------
async def prepare_database(db: BenchDatabase, base_url: str) -> str:
    """Schema, instance actor, a user and the group; returns the group's id."""
    services = build_services(
        Settings(base_url=base_url, database_url=db.url, allow_private_addresses=True)
    )
    try:
        await migrate(services.engine)
        await services.start()
        async with services.sessionmaker() as session, session.begin():
            await create_user(session, services.urls, "owner")
            group = await create_group(session, services.urls, GROUP, owner="owner")
        return group.uri
    finally:
        await services.close()


async def bench(options: Options, db: BenchDatabase) -> None:
    server = FediServer(db, options)
    group_uri = await prepare_database(db, server.base_url)
    url = f"{server.base_url}/inbox" if options.inbox == "shared" else f"{group_uri}/inbox"
    actor = FakeActor()
    await actor.start()
    stop_renicing = asyncio.Event()
    renicing: asyncio.Task[int] | None = None
    rated: Outcome | None = None
    rated_window: CpuWindow | None = None
    rated_sampling: pyspy.Recording | None = None
    try:
        t0 = time.perf_counter()
        total = options.warmup + options.requests
        signed = presign(actor, url, options.scheme, total, group_uri)
        presign_s = time.perf_counter() - t0
        pg_before = await postgres_counters(db.url) if db.kind == "postgres" else None
        server.launch(options.cpu, options.nice)
        await server.wait_ready()
        if options.nice < 0 and db.kind == "postgres":
            renicing = asyncio.create_task(renice_backends(db.url, options.nice, stop_renicing))
        connector = aiohttp.TCPConnector(limit=options.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            warm = await fire(session, url, signed[: options.warmup], options.concurrency,
                              options.timeout)
            window = CpuWindow(pids=[server.pid], watch_postgres=db.kind == "postgres")
            sampling = pyspy.record(server.pid, db.directory / "serve.pyspy") if (
                options.py_spy) else None
            try:
                with collector_paused(), window.measure():
                    timed = await fire(session, url, signed[options.warmup :],
                                       options.concurrency, options.timeout)
            finally:
                if sampling is not None:
                    sampling.stop()
            if options.rate is not None:
                capacity = timed.accepted / timed.wall if timed.wall else 0.0
                rate = options.rate or capacity / 2
                more = presign(actor, url, options.scheme,
                               max(1, int(rate * options.rate_seconds)), group_uri)
                total += len(more)
                rated_window = CpuWindow(pids=[server.pid], watch_postgres=db.kind == "postgres")
                open_loop = aiohttp.TCPConnector(limit=0)
                rated_sampling = pyspy.record(server.pid, db.directory / "rated.pyspy") if (
                    options.py_spy) else None
                try:
                    async with aiohttp.ClientSession(connector=open_loop) as free_session:
                        with collector_paused(), rated_window.measure():
                            rated = await fire_at_rate(free_session, url, more, rate,
                                                       options.timeout)
                finally:
                    if rated_sampling is not None:
                        rated_sampling.stop()
    finally:
        stop_renicing.set()
        reniced = await renicing if renicing is not None else 0
        await actor.stop()
        server.stop()
    stored = await count_rows(db.url, "inbox_items")
    pg_delta: dict[str, int] | None = None
    if pg_before is not None:
        await asyncio.sleep(1.0)  # backends report their statistics up to 1 s late
        after = await postgres_counters(db.url)
        pg_delta = {k: after[k] - pg_before[k] for k in after}
    print_results(
        options, db, server, actor, warm, timed, window, stored, total, presign_s, pg_delta,
        rated,
    )
    if rated is not None and rated_window is not None:
        print_rated(db, rated, rated_window)
    for line in server.log().splitlines():
        if line.startswith("serve_whatif:"):
            print(f"  {line}")
    if reniced:
        print(f"  ({reniced} PostgreSQL backends of the benchmark's database ran at nice "
              f"{options.nice})")
    if server.profile_path is not None and server.profile_path.exists():
        print_profile(server.profile_path)
    for phase, recording in (("timed phase", sampling), ("fixed-rate phase", rated_sampling)):
        if recording is None:
            continue
        print(f"\n== py-spy profile of the server during the {phase} (CPU samples)")
        if recording.path.exists():
            print(pyspy.summarize(recording.path))
        else:
            print(recording.log.read_text(errors="replace")[-2000:])


def print_results(
    options: Options, db: BenchDatabase, server: FediServer, actor: FakeActor, warm: Outcome,
    timed: Outcome, window: CpuWindow, stored: int, total: int, presign_s: float,
    pg_delta: dict[str, int] | None, rated: Outcome | None = None,
) -> None:
    lat = sorted(timed.latencies)
    rate = timed.accepted / timed.wall if timed.wall else 0.0
    server_cpu = window.others[0]
    path = "/inbox" if options.inbox == "shared" else f"/groups/{GROUP}/inbox"
    answered = timed.accepted + warm.accepted + (rated.accepted if rated else 0)
    if stored == total:
        durability = "OK, one row per request"
    elif stored == answered:
        durability = (f"MISMATCH: the {total - stored} requests answered non-202 were not "
                      "stored; every 202 has its row")
    else:
        durability = f"MISMATCH: {answered} answers were 202 but {stored} rows exist"
    pg_cpu = "n/a (SQLite runs in the server process)"
    if window.postgres is not None:
        per = window.postgres * 1e6 / max(timed.accepted, 1)
        pg_cpu = f"{window.postgres:.2f} s, {per:.0f} µs per request"
    rejected = sum(n for s, n in timed.statuses.items() if s != 202) + sum(
        n for s, n in warm.statuses.items() if s != 202
    ) + (sum(n for s, n in rated.statuses.items() if s != 202) if rated else 0)
    report([
        ("machine", describe_machine()),
        ("database", db.kind),
        ("inbox", f"{options.inbox}: POST {path}"),
        ("signature scheme", options.scheme),
        ("requests (timed) + warm-up", f"{options.requests} + {options.warmup}"),
        ("concurrency (in flight)", options.concurrency),
        ("server", "fedi serve --no-worker (uvicorn, one process)"),
        ("what-if patches", " ".join(options.whatif) or "none (fedi as it is)"),
        ("pinned", f"server cpu {options.cpu}, load generator cpu {other_cpu(options.cpu)}; "
                   "PostgreSQL not pinned" if options.cpu is not None else "no"),
        ("nice", options.nice),
        ("load generator's collector", "paused while requests are timed"),
        ("pre-signing", f"{total} requests in {presign_s:.1f} s (not timed)"),
        ("profiling", "cProfile in the server (slows it a lot)" if options.profile else
         "py-spy sampling the server (slows it a little)" if options.py_spy else "off"),
    ], "inbox settings")
    report([
        ("accepted (202)", f"{timed.accepted} of {options.requests}"),
        ("non-202 answers", f"{rejected} (timed: {dict(timed.statuses)}, warm-up: "
                            f"{dict(warm.statuses)})"),
        ("wall time", f"{timed.wall:.2f} s"),
        ("accepted/s", f"{rate:.0f}"),
        ("latency p50 / p90 / p99 / max", " / ".join(
            f"{percentile(lat, q) * 1000:.1f}" for q in (0.5, 0.9, 0.99, 1.0)) + " ms"),
        ("rows in inbox_items", f"{stored} of {total} requests sent (all phases): "
                                f"{durability}"),
        ("actor document fetches", actor.fetches),
        ("server CPU", f"{server_cpu:.2f} s ({server_cpu / timed.wall:.0%} of one core), "
                       f"{server_cpu * 1e6 / max(timed.accepted, 1):.0f} µs per request"),
        ("load generator CPU", f"{window.own:.2f} s ({window.own / timed.wall:.0%} of one core), "
                               f"{window.own * 1e6 / max(options.requests, 1):.0f} µs per request"),
        ("postgres server CPU (all dbs)", pg_cpu),
        ("postgres, whole server run", "n/a" if pg_delta is None else
         f"{pg_delta['sessions']} sessions opened (2 are the benchmark's), "
         f"{pg_delta['commits']} commits, "
         f"{pg_delta['rollbacks']} rollbacks; WAL (server-wide) {pg_delta['wal_writes']} writes, "
         f"{pg_delta['wal_syncs']} fsyncs"),
        ("machine CPU, both cores", f"{window.machine:.2f} s of {2 * timed.wall:.2f} s available"),
    ], "inbox results")
    for error in timed.errors or warm.errors:
        print(f"  first error bodies: {error}")
    if rejected:
        print(f"\n== tail of the server log\n{server.log()}")
    if db.kind == "postgres":
        verdict = "MET" if rate >= TARGET_PER_SECOND and stored == total else "NOT MET"
        report([("target", f"{verdict} ({rate:.0f}/s vs >= {TARGET_PER_SECOND:.0f}/s on "
                           "PostgreSQL)")], "verdict")
    else:
        report([("target", f"n/a on SQLite (>= {TARGET_PER_SECOND:.0f}/s is for PostgreSQL)")],
               "verdict")


def print_rated(db: BenchDatabase, rated: Outcome, window: CpuWindow) -> None:
    lat = sorted(rated.latencies)
    p99 = percentile(lat, 0.99)
    report([
        ("offered rate (open loop)", f"{rated.offered:.0f}/s for {len(lat)} requests"),
        ("answers", dict(rated.statuses)),
        ("accepted/s", f"{rated.accepted / rated.wall:.0f}" if rated.wall else "n/a"),
        ("latency p50 / p90 / p99 / max", " / ".join(
            f"{percentile(lat, q) * 1000:.1f}" for q in (0.5, 0.9, 0.99, 1.0)) + " ms"),
        ("server CPU", f"{window.others[0]:.2f} s ({window.others[0] / rated.wall:.0%} of one "
                       f"core), {window.others[0] * 1e6 / max(rated.accepted, 1):.0f} µs per "
                       "request"),
    ], "inbox at a fixed rate")
    for error in rated.errors:
        print(f"  first error bodies: {error}")
    if db.kind == "postgres":
        verdict = "MET" if p99 <= TARGET_P99 and rated.accepted == len(lat) else "NOT MET"
        report([("p99 target", f"{verdict} ({p99 * 1000:.1f} ms vs <= "
                               f"{TARGET_P99 * 1000:.0f} ms at half the capacity)")], "verdict")


def print_profile(path: Path, top: int = 25) -> None:
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(str(path), stream=out).strip_dirs().sort_stats(order).print_stats(top)
        lines = out.getvalue().splitlines()
        start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
        print(f"\n== server profile (whole server lifetime, main thread), top {top} by {order}")
        print("\n".join(lines[start:]).rstrip())


async def main_async(options: Options) -> None:
    async with throwaway_database(options.database, "inbox", options.pg_url) as db:
        await bench(options, db)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inbox", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--requests", type=int, default=20_000, help="timed requests")
    parser.add_argument("--warmup", type=int, default=500, help="untimed requests first")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--scheme", choices=("cavage", "rfc9421"), default="cavage")
    parser.add_argument("--inbox", choices=("shared", "group"), default="shared")
    parser.add_argument("--server-workers", type=int, default=1, metavar="N",
                        help="fedi serve --workers N (N > 1: not pinned; server CPU then "
                        "counts only the parent process)")
    parser.add_argument("--cpu", type=int, default=0,
                        help="pin the server to this CPU (load generator: the other); -1: no")
    parser.add_argument("--nice", type=int, default=0,
                        help="priority adjustment for the server and this process (e.g. -10 "
                             "as root on a shared machine)")
    parser.add_argument("--profile", action="store_true",
                        help="run the server under cProfile and print its top entries")
    parser.add_argument("--py-spy", action="store_true",
                        help="sample the server with py-spy (pip install py-spy) during the "
                             "timed phase (and the --rate phase) and print where its CPU goes")
    parser.add_argument("--whatif-pool", default=None, metavar="SIZE[,OVERFLOW]",
                        help="what-if: run the server with this SQLAlchemy pool")
    parser.add_argument("--whatif-store", choices=("core",), default=None,
                        help="what-if: store each inbox row with its own Core INSERT and "
                             "commit (fedi group-commits them)")
    parser.add_argument("--rate", default=None, metavar="R|half",
                        help="then run open loop at R requests/s ('half': half the capacity "
                             "just measured) and print its latency percentiles")
    parser.add_argument("--rate-seconds", type=float, default=10.0,
                        help="length of the --rate phase")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="give up on a phase after this many seconds")
    parser.add_argument("--pg-url", default=None,
                        help="PostgreSQL server for the throwaway database "
                             "(default $FEDI_BENCH_POSTGRES_URL or postgres@127.0.0.1:5432)")
    args = parser.parse_args(argv)
    if args.py_spy and not pyspy.available():
        parser.error("--py-spy needs py-spy on PATH: pip install py-spy")
    if args.rate not in (None, "half") and not float(args.rate) > 0:
        parser.error("--rate must be a positive number or 'half'")
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 1:
        parser.error("--requests, --warmup and --concurrency must be at least 1")
    return Options(
        database=args.database, requests=args.requests, warmup=args.warmup,
        concurrency=args.concurrency, scheme=args.scheme, inbox=args.inbox,
        cpu=None if args.cpu < 0 or args.server_workers > 1 else args.cpu, nice=args.nice,
        profile=args.profile, server_workers=args.server_workers,
        py_spy=args.py_spy,
        whatif=whatif_args(args.whatif_pool, args.whatif_store),
        timeout=args.timeout, pg_url=args.pg_url,
        rate=None if args.rate is None else 0.0 if args.rate == "half" else float(args.rate),
        rate_seconds=args.rate_seconds,
    )


def whatif_args(pool: str | None, store: str | None) -> list[str]:
    result: list[str] = []
    if pool:
        size, _, overflow = pool.partition(",")
        result += ["--pool-size", str(int(size)), "--max-overflow", str(int(overflow or 0))]
    if store:
        result += ["--store", store]
    return result


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    raise_nofile(options.concurrency * 2 + 1024)
    if options.nice:
        os.nice(options.nice)
    if options.cpu is not None and pin(0, other_cpu(options.cpu)).startswith("not"):
        options.cpu = None
    run(lambda: main_async(options), use_uvloop=True)


if __name__ == "__main__":
    main()
