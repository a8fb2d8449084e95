"""Fan-out as admins run it: `fedi serve` (defaults), members that joined by signed Follows.

    python -m bench.serve_fanout [--mode post|relay] [--n N] [--rtt-ms 100] [--workers K]

N fake remote servers (bench.fake_inboxes, one host each, answering after --rtt-ms) each
serve a member's actor document; this process signs each member's Follow of the group and
POSTs it to fedi's inbox, so fedi's own follow flow records the N members (and sends the N
Accepts, waited out before anything is timed).

- `--mode post` (issue 13 items 1, 2): `fedi post` makes one thread in the group; timed from
  the commit (the deliveries' created_at) to each member server's arrival. Prints
  deliveries/s, the server's (or workers') CPU per delivery, the RSA-2048 signature measured
  in this run and their ratio. Targets: CPU per delivery <= 2x the signature, last arrival
  <= 1.5 s after the commit (N=2,000, 100 ms).
- `--mode relay` (item 7): one member POSTs a signed Create of a new thread to the group's
  inbox; timed from that POST to each member server's Announce. Targets: p50 <= 0.5 s,
  p99 <= 1 s (N=1,000, 100 ms).
- `--workers K` (item 2, PostgreSQL): `fedi serve --no-worker` and `fedi worker` processes:
  one post with 1 worker, then one with K, and both rates. Workers are not pinned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bench import pyspy
from bench.common import (
    BenchDatabase,
    describe_machine,
    other_cpu,
    percentile,
    pin,
    postgres_cpu_seconds,
    process_cpu_seconds,
    raise_nofile,
    report,
    run,
    throwaway_database,
    timed_sync,
)
from fedi.activitypub.httpsig import sign_request
from fedi.activitypub.keys import SigningKey, generate_rsa_keypair, load_private_key
from fedi.activitypub.poster import IDLE_SECONDS
from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC
from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.services import build_services
from fedi.store.migrate import migrate
from fedi.store.models import Actor, Delivery, Follow

GROUP = "benchgroup"
OWNER = "owner"
START_TIMEOUT = 60.0
SERVER_PORTS = range(18700, 18800)  # fedi serve listens on the first free one
INBOX_PORTS = 20000  # the fake servers take free ports from here up
JOIN_TIMEOUT = 600.0  # N Follows processed and N Accepts delivered
SIGNATURE_TARGET = 2.0
POST_WALL_TARGET = 1.5
RELAY_P50_TARGET, RELAY_P99_TARGET = 0.5, 1.0


@dataclass
class Options:
    mode: str
    n: int
    rtt_ms: float
    database: str
    workers: int  # 0: the worker runs inside `fedi serve` (its default)
    cpu: int | None
    profile: bool
    profile_out: str | None  # keep py-spy's raw samples (collapsed stacks) here
    timeout: float
    pg_url: str | None
    posts: int  # post mode: this many posts, one after another, each timed on its own
    settings: dict[str, str]  # FEDI_* overrides (--set); empty: fedi's defaults
    cold: bool = False  # wait before each post until fedi's kept-alive connections closed


@dataclass
class Phase:
    label: str
    started: float  # wall clock: the commit (post) or the POST's start (relay)
    arrivals: list[float]
    cpu: float  # fedi's processes (serve and workers), seconds
    recorded: int  # delivery rows of the activity no longer pending
    expected: int
    others: OtherCpu  # what the rest of the machine spent on the phase
    by_process: dict[str, float]  # fedi's CPU seconds per process (serve, worker0, …)
    signs_us: tuple[float, float]  # the bare RSA signature just before and just after, µs CPU
    on_new: int  # arrivals on a connection new to the fake server (the rest: kept alive)


@dataclass
class OtherCpu:
    """CPU seconds of the fake servers and (PostgreSQL runs) the whole PostgreSQL server."""

    fakes: float
    postgres: float | None


@dataclass
class CpuSpan:
    """CPU counters at a phase's start; `spent()` gives what each part used since."""

    fleet: Fleet
    inboxes: Inboxes
    fedi: dict[str, float]
    others: OtherCpu

    @classmethod
    def start(cls, fleet: Fleet, inboxes: Inboxes) -> CpuSpan:
        return cls(fleet, inboxes, fleet.cpu_by_process(), _other_cpu(fleet, inboxes))

    def spent(self) -> tuple[dict[str, float], OtherCpu]:
        fedi = {label: seconds - self.fedi.get(label, 0.0)
                for label, seconds in self.fleet.cpu_by_process().items()}
        now = _other_cpu(self.fleet, self.inboxes)
        postgres = None if now.postgres is None or self.others.postgres is None else (
            now.postgres - self.others.postgres)
        return fedi, OtherCpu(now.fakes - self.others.fakes, postgres)


def _other_cpu(fleet: Fleet, inboxes: Inboxes) -> OtherCpu:
    return OtherCpu(inboxes.cpu(),
                    postgres_cpu_seconds() if fleet.db.kind == "postgres" else None)


class Fleet:
    """`fedi serve` and any `fedi worker` processes on one database, with their logs."""

    def __init__(self, db: BenchDatabase, overrides: dict[str, str]) -> None:
        self.port = next(p for p in SERVER_PORTS if port_free(p))
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.db = db
        self.env = dict(os.environ, FEDI_BASE_URL=self.base_url, FEDI_DATABASE_URL=db.url,
                        FEDI_ALLOW_PRIVATE_ADDRESSES="1", FEDI_INSTANCE_NAME="bench",
                        **overrides)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.labels: dict[int, str] = {}

    def _start(self, args: list[str], label: str, cpu: int | None) -> subprocess.Popen[bytes]:
        with (self.db.directory / f"{label}.log").open("ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "fedi", *args], env=self.env,
                                       cwd=self.db.directory, stdout=log,
                                       stderr=subprocess.STDOUT)
        pin(process.pid, cpu)
        self.processes.append(process)
        self.labels[process.pid] = label
        return process

    def serve(self, worker: bool, cpu: int | None) -> subprocess.Popen[bytes]:
        extra = [] if worker else ["--no-worker"]
        return self._start(["serve", "--host", "127.0.0.1", "--port", str(self.port), *extra],
                           "serve", cpu)

    def worker(self, index: int, cpu: int | None) -> subprocess.Popen[bytes]:
        return self._start(["worker"], f"worker{index}", cpu)

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "fedi", *args], env=self.env,
                              cwd=self.db.directory, capture_output=True, check=False)
        if done.returncode:
            raise RuntimeError(f"fedi {args[0]} failed: {done.stderr.decode()[-2000:]}")
        return done.stdout.decode()

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.processes[0].poll() is not None:
                    break
                try:
                    async with session.get(f"{self.base_url}/.well-known/nodeinfo") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"fedi serve did not start:\n{self.log('serve')}")

    def cpu_by_process(self) -> dict[str, float]:
        return {self.labels[p.pid]: process_cpu_seconds(p.pid)
                for p in self.processes if p.poll() is None}

    def stop(self, process: subprocess.Popen[bytes] | None = None) -> None:
        for each in [process] if process is not None else list(self.processes):
            if each.poll() is None:
                each.send_signal(signal.SIGINT)
                try:
                    each.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    each.kill()
                    each.wait()
            self.processes.remove(each)

    def log(self, label: str) -> str:
        path = self.db.directory / f"{label}.log"
        return path.read_text(errors="replace")[-8000:] if path.exists() else ""


class Inboxes:
    """The fake remote servers (a child process) and their control port."""

    def __init__(self, n: int, rtt_ms: float, pem_path: Path, cpu: int | None) -> None:
        command = [sys.executable, "-m", "bench.fake_inboxes", "--n", str(n), "--rtt-ms",
                   str(rtt_ms), "--actor-pem", str(pem_path), "--port-base", str(INBOX_PORTS)]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        hello = json.loads(self.process.stdout.readline())
        self.ports: list[int] = hello["ports"]
        self.control = f"http://127.0.0.1:{hello['control']}"

    async def mark(self, session: aiohttp.ClientSession, marker: str) -> None:
        async with session.post(f"{self.control}/mark", data=marker.encode()) as resp:
            resp.raise_for_status()

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.control}/stats") as resp:
            found: dict[str, Any] = await resp.json()
            return found

    def cpu(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # EOF: it exits
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def member_uri(port: int) -> str:
    return f"http://127.0.0.1:{port}/users/member"


async def prepare_database(db: BenchDatabase, base_url: str) -> str:
    services = build_services(
        Settings(base_url=base_url, database_url=db.url, allow_private_addresses=True)
    )
    try:
        await migrate(services.engine)
        await services.start()
        async with services.sessionmaker() as session, session.begin():
            await create_user(session, services.urls, OWNER)
            group = await create_group(session, services.urls, GROUP, owner=OWNER)
        return group.uri
    finally:
        await services.close()


async def post_signed(
    session: aiohttp.ClientSession, url: str, activity: dict[str, Any], key: SigningKey
) -> int:
    body = json.dumps(activity).encode()
    headers = sign_request("cavage", "POST", url, {"Content-Type": "application/activity+json"},
                           body, key)
    for _ in range(20):  # honour Retry-After (admission control) rather than lose a Follow
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status not in (429, 503):
                return resp.status
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
    return resp.status


async def join(
    session: aiohttp.ClientSession, fleet: Fleet, inboxes: Inboxes, group_uri: str,
    private_pem: str,
) -> float:
    """Every member Follows the group (signed); wait until fedi accepted all and delivered
    every Accept. Returns the seconds it took."""
    started = time.monotonic()
    url = f"{group_uri}/inbox"
    statuses: dict[int, int] = {}
    queue = iter(inboxes.ports)

    async def sender() -> None:
        for port in queue:
            uri = member_uri(port)
            follow = {"@context": AS_CONTEXT, "id": f"http://127.0.0.1:{port}/follows/"
                      f"{uuid.uuid4().hex}", "type": "Follow", "actor": uri, "object": group_uri}
            status = await post_signed(session, url, follow, SigningKey(f"{uri}#main-key",
                                                                        private_pem))
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(sender() for _ in range(16)))
    if set(statuses) - {200, 201, 202}:
        raise RuntimeError(f"Follows answered {statuses}:\n{fleet.log('serve')}")
    engine = create_async_engine(fleet.db.url)
    try:
        while time.monotonic() - started < JOIN_TIMEOUT:
            async with engine.connect() as conn:
                accepted = (await conn.execute(
                    select(func.count()).select_from(Follow)
                    .join(Actor, Actor.id == Follow.target_id)
                    .where(Actor.uri == group_uri, Follow.state == "accepted")
                )).scalar_one()
                pending = (await conn.execute(
                    select(func.count()).select_from(Delivery).where(Delivery.state == "pending")
                )).scalar_one()
            if accepted >= len(inboxes.ports) and pending == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    raise RuntimeError(f"members not joined after {JOIN_TIMEOUT:g} s "
                       f"({accepted} accepted, {pending} deliveries pending)")


async def settled_deliveries(url: str, since: float) -> tuple[float | None, int, int]:
    """(first created_at, rows created since `since`, of them no longer pending)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            first, total, done = (await conn.execute(
                select(func.min(Delivery.created_at), func.count(),
                       func.count().filter(Delivery.state != "pending"))
                .where(Delivery.created_at >= since)
            )).one()
    finally:
        await engine.dispose()
    return first, int(total), int(done)


async def wait_arrivals(
    session: aiohttp.ClientSession, inboxes: Inboxes, expected: int, limit_s: float
) -> tuple[list[float], int]:
    """The marked arrivals, sorted, and how many came on new connections."""
    deadline = time.monotonic() + limit_s
    while True:
        stats = await inboxes.stats(session)
        arrivals: list[float] = stats["marked"]
        if len(arrivals) >= expected or time.monotonic() > deadline:
            return sorted(arrivals), int(stats["marked_on_new"])
        await asyncio.sleep(0.05)


async def wait_recorded(url: str, since: float, limit_s: float) -> tuple[float | None, int, int]:
    deadline = time.monotonic() + limit_s
    while True:
        first, total, done = await settled_deliveries(url, since)
        if (total and done >= total) or time.monotonic() > deadline:
            return first, total, done
        await asyncio.sleep(0.1)


async def post_phase(
    session: aiohttp.ClientSession, fleet: Fleet, inboxes: Inboxes, options: Options, label: str,
    private_pem: str,
) -> Phase:
    if options.cold:  # fedi's kept-alive connections from earlier work close first
        await asyncio.sleep(IDLE_SECONDS + 2.0)
    marker = f"servefanout{uuid.uuid4().hex}"
    await inboxes.mark(session, marker)
    sign_before = rsa_sign_us(private_pem, fedi_cpu(options))
    since = time.time()
    cpu = CpuSpan.start(fleet, inboxes)
    await asyncio.to_thread(fleet.cli, "post", "--as", OWNER, "--group", GROUP, "--title",
                            f"Thread {marker}", f"A new thread for every member. {marker}")
    arrivals, on_new = await wait_arrivals(session, inboxes, options.n, options.timeout)
    first, total, done = await wait_recorded(fleet.db.url, since, options.timeout)
    by_process, others = cpu.spent()
    signs = (sign_before, rsa_sign_us(private_pem, fedi_cpu(options)))
    return Phase(label, first or since, arrivals, sum(by_process.values()), done, total, others,
                 by_process, signs, on_new)


async def relay_phase(
    session: aiohttp.ClientSession, fleet: Fleet, inboxes: Inboxes, options: Options,
    group_uri: str, private_pem: str,
) -> Phase:
    marker = f"servefanout{uuid.uuid4().hex}"
    await inboxes.mark(session, marker)
    port = inboxes.ports[0]
    author = member_uri(port)
    note = f"http://127.0.0.1:{port}/notes/{marker}"
    published = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    create = {
        "@context": AS_CONTEXT, "id": f"{note}/create", "type": "Create", "actor": author,
        "published": published, "to": [PUBLIC, group_uri], "cc": [f"{author}/followers"],
        "object": {"id": note, "type": "Page", "name": f"Thread {marker}",
                   "attributedTo": author, "content": f"<p>A member's new thread. {marker}</p>",
                   "published": published, "to": [PUBLIC, group_uri], "audience": group_uri},
    }
    key = SigningKey(f"{author}#main-key", private_pem)
    sign_before = rsa_sign_us(private_pem, fedi_cpu(options))
    since = time.time()
    cpu = CpuSpan.start(fleet, inboxes)
    status = await post_signed(session, f"{group_uri}/inbox", create, key)
    if status not in (200, 201, 202):
        raise RuntimeError(f"the member's Create was answered {status}")
    # The author's own server is not sent its member's post back.
    arrivals, on_new = await wait_arrivals(session, inboxes, options.n - 1, options.timeout)
    _, total, done = await wait_recorded(fleet.db.url, since, options.timeout)
    by_process, others = cpu.spent()
    signs = (sign_before, rsa_sign_us(private_pem, fedi_cpu(options)))
    return Phase("relay", since, arrivals, sum(by_process.values()), done, total, others,
                 by_process, signs, on_new)


def fedi_cpu(options: Options) -> int | None:
    """The core `fedi serve` is pinned to; None when it is not (`--workers`)."""
    return options.cpu if options.workers == 0 else None


def rsa_sign_us(private_pem: str, cpu: int | None) -> float:
    """The bare RSA-2048 PKCS#1 v1.5 SHA-256 signature of a typical signing string, µs CPU,
    measured on `cpu` (fedi serve's, idle between phases) when given. The machine's speed
    drifts by a fifth within minutes here, so each phase is compared with signatures taken
    just before and just after it, on the core it ran on."""
    private = load_private_key(private_pem)
    assert isinstance(private, rsa.RSAPrivateKey)
    base = ("(request-target): post /inbox\nhost: 127.0.0.1:20000\ndate: "
            "Wed, 02 Dec 2026 22:00:00 GMT\ndigest: SHA-256=" + "A" * 44).encode()
    own = os.sched_getaffinity(0)  # the fake servers' core: this process is pinned there
    if cpu is not None and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})
    try:
        cpu_us, _ = timed_sync(lambda: private.sign(base, padding.PKCS1v15(), hashes.SHA256()),
                               300)
    finally:
        os.sched_setaffinity(0, own)
    return cpu_us


def cpu_line(seconds: float, deliveries: int) -> str:
    return f"{seconds:.2f} s, {seconds * 1e3 / max(deliveries, 1):.3f} ms per delivery"


def cpus() -> int:
    return os.cpu_count() or 1  # the machine's: this process is pinned to one


def machine_ceiling(phase: Phase) -> float:
    """Deliveries/s if every core of the machine were busy with the phase's work: the fake
    servers and PostgreSQL share the cores with fedi here, so they bound its scaling."""
    spent = phase.cpu + phase.others.fakes + (phase.others.postgres or 0.0)
    return cpus() * len(phase.arrivals) / spent if spent > 0 else 0.0


def print_phase(phase: Phase, mode: str) -> float:
    """Print one phase; return its deliveries/s."""
    sign_us = sum(phase.signs_us) / 2
    delays = [a - phase.started for a in phase.arrivals]
    last = delays[-1] if delays else float("nan")
    rate = len(delays) / last if delays and last > 0 else 0.0
    per = phase.cpu * 1e3 / max(len(delays), 1)
    floor = phase.expected * sign_us / 1e6
    rows: list[tuple[str, Any]] = [
        ("arrivals", f"{len(delays)} of {phase.expected} member servers"),
        ("rows recorded", f"{phase.recorded} of {phase.expected} (no longer pending)"),
        ("from " + ("commit" if mode == "post" else "the member's POST") + " to arrival",
         " / ".join(f"{name} {percentile(delays, q):.3f}" for name, q in
                    (("first", 0.0), ("p50", 0.5), ("p99", 0.99), ("last", 1.0))) + " s"),
        ("deliveries/s", f"{rate:.0f}"),
        ("connections", f"{phase.on_new} arrivals on a new connection, "
                        f"{len(delays) - phase.on_new} on one kept alive from earlier work"),
        ("fedi CPU", f"{phase.cpu:.2f} s, {per:.3f} ms per delivery"),
        *([("fedi CPU by process", ", ".join(f"{label} {seconds:.2f} s" for label, seconds
                                              in phase.by_process.items()))]
          if len(phase.by_process) > 1 else []),
        ("fake servers CPU", cpu_line(phase.others.fakes, len(delays))),
        *([("PostgreSQL CPU (whole server)", cpu_line(phase.others.postgres, len(delays)))]
          if phase.others.postgres is not None else []),
        ("RSA-2048 sign (this run)", f"{sign_us / 1000:.3f} ms (the mean of "
         + " and ".join(f"{us / 1000:.3f}" for us in phase.signs_us)
         + " ms, on fedi's core just before and after)"),
        ("CPU per delivery / RSA sign", f"{per * 1000 / sign_us:.2f}x"),
        # What the wall-clock goals can meet on one core: every delivery is signed there, so
        # the last one cannot arrive before all of them are signed.
        ("one core's floor", f"{phase.expected} signatures take {floor:.2f} s: no last "
                             "arrival comes sooner on one core"),
    ]
    if mode == "post":
        met = per * 1000 / sign_us <= SIGNATURE_TARGET and last <= POST_WALL_TARGET
        rows.append(("target", f"{'MET' if met else 'NOT MET'} (<= {SIGNATURE_TARGET:g}x the "
                               f"signature, last <= {POST_WALL_TARGET:g} s)"))
    else:
        p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
        met = p50 <= RELAY_P50_TARGET and p99 <= RELAY_P99_TARGET
        rows.append(("target", f"{'MET' if met else 'NOT MET'} (p50 <= {RELAY_P50_TARGET:g} s,"
                               f" p99 <= {RELAY_P99_TARGET:g} s)"))
    report(rows, phase.label)
    return rate


async def bench(options: Options, db: BenchDatabase) -> None:
    fleet = Fleet(db, options.settings)
    group_uri = await prepare_database(db, fleet.base_url)
    private_pem, public_pem = generate_rsa_keypair()
    pem_path = db.directory / "members.pem"
    pem_path.write_text(public_pem)
    inboxes = Inboxes(options.n, options.rtt_ms, pem_path, other_cpu(options.cpu))
    server_cpu = fedi_cpu(options)
    sampling: pyspy.Recording | None = None
    try:
        fleet.serve(worker=options.workers == 0, cpu=server_cpu)
        workers = [fleet.worker(0, None)] if options.workers else []
        await fleet.wait_ready()
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                joined = await join(session, fleet, inboxes, group_uri, private_pem)
            except aiohttp.ClientError as exc:
                raise RuntimeError(f"joining failed ({exc}):\n{fleet.log('serve')}") from exc
            report([
                ("machine", describe_machine()),
                ("database", db.kind),
                ("mode", options.mode),
                ("settings", " ".join(f"{k}={v}" for k, v in options.settings.items())
                 or "fedi's defaults"),
                ("member servers", f"{options.n}, {options.rtt_ms:g} ms round trip"),
                ("fedi", "fedi serve with its worker (defaults)" if not options.workers else
                 f"fedi serve --no-worker + fedi worker x1, then x{options.workers}"),
                ("pinned", f"fedi serve cpu {server_cpu}, fake servers cpu "
                           f"{other_cpu(options.cpu)}" if server_cpu is not None else "no"),
                ("joined", f"{options.n} signed Follows accepted, Accepts delivered, "
                           f"in {joined:.1f} s (not timed)"),
            ], "serve_fanout settings")
            if options.profile:
                sampler = workers[0].pid if workers else fleet.processes[0].pid
                sampling = pyspy.record(sampler, db.directory / "fanout.pyspy")
                await asyncio.sleep(1.0)  # py-spy attaches
            rates: list[float] = []
            if options.mode == "post":
                for index in range(options.posts):
                    phase = await post_phase(session, fleet, inboxes, options,
                                             f"post {index + 1}" + (" (1 worker)" if workers
                                                                    else ""), private_pem)
                    rates.append(print_phase(phase, "post"))
                if options.workers > 1:
                    workers += [fleet.worker(i, None) for i in range(1, options.workers)]
                    await asyncio.sleep(3.0)  # the new workers start up
                    phase = await post_phase(session, fleet, inboxes, options,
                                             f"post ({options.workers} workers)", private_pem)
                    rates.append(print_phase(phase, "post"))
                    ceiling = machine_ceiling(phase)
                    report([("deliveries/s", f"{rates[0]:.0f} with 1 worker, {rates[-1]:.0f} "
                             f"with {options.workers}: {rates[-1] / max(rates[0], 1):.2f}x "
                             "(target >= 1.8x with 2)"),
                            ("most this machine allows", f"{ceiling:.0f}/s = "
                             f"{ceiling / max(rates[0], 1):.2f}x the 1-worker rate ({cpus()} "
                             "cores / the CPU per delivery of fedi, the fake servers and "
                             "PostgreSQL in the last phase)")], "scaling")
            else:
                phase = await relay_phase(session, fleet, inboxes, options, group_uri,
                                          private_pem)
                print_phase(phase, "relay")
            if sampling is not None:
                sampling.stop()
                print("\n== py-spy profile of the " + ("worker" if workers else "server")
                      + " (CPU samples, whole run after joining)")
                print(pyspy.summarize(sampling.path) if sampling.path.exists() else
                      sampling.log.read_text(errors="replace")[-2000:])
                if options.profile_out and sampling.path.exists():
                    shutil.copyfile(sampling.path, options.profile_out)
    finally:
        fleet.stop()
        inboxes.close()


async def main_async(options: Options) -> None:
    async with throwaway_database(options.database, "servefanout", options.pg_url) as db:
        await bench(options, db)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_fanout",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("post", "relay"), default="post")
    parser.add_argument("--n", type=int, default=None,
                        help="member servers (default 2,000 for post, 1,000 for relay)")
    parser.add_argument("--rtt-ms", type=float, default=100.0)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=0,
                        help="K > 0: fedi serve --no-worker and fedi worker processes (1, then K)")
    parser.add_argument("--cpu", type=int, default=0,
                        help="pin fedi serve to this CPU (fake servers: the other); -1: no")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the server (or the first worker) and print its summary")
    parser.add_argument("--profile-out", default=None, metavar="PATH",
                        help="with --profile: also keep py-spy's raw samples in PATH")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="give up waiting for arrivals after this many seconds")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--cold", action="store_true",
                        help=f"post mode: wait {IDLE_SECONDS + 2:g} s before each post, so that "
                             "fedi opens a new connection to every server (by default a post "
                             "reuses those kept alive from the join or the previous post)")
    parser.add_argument("--posts", type=int, default=1,
                        help="post mode: this many posts one after another (one join)")
    parser.add_argument("--set", action="append", default=[], metavar="FEDI_NAME=VALUE",
                        help="run fedi with this setting (repeatable; to compare with defaults)")
    args = parser.parse_args(argv)
    if args.profile and not pyspy.available():
        parser.error("--profile needs py-spy on PATH: pip install py-spy")
    n = args.n or (2000 if args.mode == "post" else 1000)
    return Options(mode=args.mode, n=n, rtt_ms=args.rtt_ms, database=args.database,
                   workers=args.workers, cpu=None if args.cpu < 0 else args.cpu,
                   profile=args.profile, profile_out=args.profile_out, timeout=args.timeout,
                   pg_url=args.pg_url,
                   posts=max(1, args.posts), settings=dict(item.split("=", 1) for item in args.set),
                   cold=args.cold)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    raise_nofile(4 * options.n + 1024)
    if options.cpu is not None and pin(0, other_cpu(options.cpu)).startswith("not"):
        options.cpu = None
    run(lambda: main_async(options), use_uvloop=True)


if __name__ == "__main__":
    main()
