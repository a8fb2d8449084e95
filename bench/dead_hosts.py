"""Dead hosts: a group whose member servers went dead, and the one healthy member's latency.

    python -m bench.dead_hosts [--database sqlite|postgres] [--dead 1000] [--threads 100]
                               [--interval 0.2] [--baseline 0]

Runs fedi as admins do: `fedi serve --no-worker` and `fedi worker`, two processes, default
settings. The group has 1,000 member servers whose shared inboxes are loopback ports nobody
listens on (connection refused, checked before the run), one healthy member server (an
aiohttp inbox in this process that notes when each post arrives) and a remote member who
starts `--threads` threads: signed Creates POSTed to the group's inbox, one every
`--interval` s. Each thread is relayed to every member server, so the queue grows by 1,000
undeliverable rows per thread. With `--baseline N` the dead servers already have N rows
queued (enqueued straight into the database) before the first thread.

Prints: the queue's peak (pending deliveries), the RSS of serve and worker (at start, peak
of their sum), the time from each POST to the healthy server having the post (p50/p99/max),
CPU of each process, and how many connection attempts went to the dead servers.
Goals (issue 13 item 9): RSS of both ≤ 200 MB with 100,000 rows queued for dead hosts; every
post at the healthy server within 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import pyspy
from bench.common import (
    BenchDatabase,
    describe_machine,
    percentile,
    process_cpu_seconds,
    raise_nofile,
    report,
    run,
    throwaway_database,
)
from bench.inbox import FakeActor, presign
from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.delivery.enqueue import enqueue
from fedi.services import build_services
from fedi.store.migrate import migrate
from fedi.store.models import Actor, Delivery, Follow, Host

HEALTHY_PORT, POSTER_PORT, FEDI_PORT = 18300, 18301, 18302
DEAD_PORTS = range(18400, 19500)
GROUP = "deadhosts"
START_TIMEOUT = 60.0
ARRIVAL_TIMEOUT = 120.0  # after the last POST, how long to wait for the healthy server
GOAL_SECONDS, GOAL_MB = 5.0, 200.0


@dataclass
class Options:
    database: str
    dead: int
    threads: int
    interval: float
    baseline: int
    pg_url: str | None
    py_spy: bool = False


@dataclass
class HealthyInbox:
    """The one live member server: answers 202 at once and notes when each post arrived."""

    token: str
    expected: int
    arrived: dict[int, float] = field(default_factory=dict)
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    posts: int = 0
    _runner: web.AppRunner | None = None

    async def _inbox(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.posts += 1
        found = re.search(rf"/notes/{self.token}-(\d+)", body)
        if found:
            self.arrived.setdefault(int(found.group(1)), time.time())  # fedi's clock too
            if len(self.arrived) >= self.expected:
                self.all_arrived.set()
        return web.Response(status=202)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/inbox", self._inbox)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", HEALTHY_PORT).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def refusing_ports(count: int) -> list[int]:
    """`count` ports of DEAD_PORTS where a connection is refused (nobody listens)."""
    ports: list[int] = []
    for port in DEAD_PORTS:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"only {len(ports)} refusing ports in {DEAD_PORTS}")


def poster_at(port: int) -> FakeActor:
    """bench.inbox's fake remote member, on a port of this benchmark's range."""
    actor = FakeActor()
    actor.port, actor.base = port, f"http://127.0.0.1:{port}"
    actor.uri = f"{actor.base}/users/bench"
    actor.key = type(actor.key)(f"{actor.uri}#main-key", actor.key.private_pem)
    return actor


def remote_actor(uri: str, host: str) -> dict[str, object]:
    return {"uri": uri, "type": "Person", "local": False, "username": "member",
            "domain": host, "inbox": f"{uri}/inbox", "shared_inbox": f"http://{host}/inbox"}


async def prepare(db: BenchDatabase, base_url: str, poster: FakeActor, dead: list[int],
                  baseline: int) -> str:
    """Schema, the group, its members (the poster, the healthy server, the dead ones)."""
    services = build_services(
        Settings(base_url=base_url, database_url=db.url, allow_private_addresses=True))
    try:
        await migrate(services.engine)
        await services.start()
        async with services.sessionmaker() as session, session.begin():
            await create_user(session, services.urls, "owner")
            group = await create_group(session, services.urls, GROUP, owner="owner")
            hosts = [f"127.0.0.1:{p}" for p in (HEALTHY_PORT, *dead)]
            members = [remote_actor(f"http://{h}/users/member", h) for h in hosts]
            members.append({**remote_actor(poster.uri, f"127.0.0.1:{POSTER_PORT}"),
                            "key_id": poster.key.key_id, "public_key_pem": poster.public_pem,
                            "username": "bench"})
            await session.execute(insert(Actor), members)
            ids = (await session.execute(
                select(Actor.id).where(Actor.uri.in_([m["uri"] for m in members])))).scalars()
            await session.execute(insert(Follow), [
                {"follower_id": i, "target_id": group.id, "state": "accepted"} for i in ids])
            # Known threaded servers: no NodeInfo look-up, each gets the Announce of the Create.
            await session.execute(insert(Host), [
                {"host": h, "failures": 0, "down_until": 0.0, "gone": False,
                 "software": "lemmy", "software_checked_at": time.time()} for h in hosts])
            for n in range(baseline):
                activity = {"id": f"{base_url}/activities/old-{n}", "type": "Announce",
                            "actor": group.uri, "object": f"{base_url}/posts/old-{n}"}
                await enqueue(session, group, activity,
                              [f"http://127.0.0.1:{p}/inbox" for p in dead])
        return group.uri
    finally:
        await services.close()


def launch(db: BenchDatabase, base_url: str, command: list[str], name: str
           ) -> subprocess.Popen[bytes]:
    env = dict(os.environ, FEDI_BASE_URL=base_url, FEDI_DATABASE_URL=db.url,
               FEDI_ALLOW_PRIVATE_ADDRESSES="1", FEDI_INSTANCE_NAME="deadhosts")
    with (db.directory / f"{name}.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "fedi", *command], env=env,
                                cwd=db.directory, stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("fedi serve exited early")
            try:
                async with session.get(f"{base_url}/.well-known/nodeinfo") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("fedi serve did not start")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size: pages shared by the two processes (the interpreter, libraries)
    counted half in each, so the two add up to what they hold together."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Sampler:
    """Pending deliveries and RSS of both processes every 0.5 s; keeps the peaks."""

    url: str
    pids: tuple[int, int]
    queue_peak: int = 0
    pss_peak: float = 0.0
    visible: dict[int, float] = field(default_factory=dict)  # healthy row id: first seen
    rss_peak: float = 0.0
    rss_each_peak: list[float] = field(default_factory=lambda: [0.0, 0.0])

    async def pending(self) -> int:
        engine = create_async_engine(self.url)
        try:
            async with engine.connect() as conn:
                found = await conn.execute(
                    select(func.count()).select_from(Delivery).where(Delivery.state == "pending"))
                return int(found.scalar_one())
        finally:
            await engine.dispose()

    async def run(self, stop: asyncio.Event) -> None:
        engine = create_async_engine(self.url)
        try:
            while not stop.is_set():
                each = [rss_mb(p) for p in self.pids]
                self.rss_peak = max(self.rss_peak, sum(each))
                self.pss_peak = max(self.pss_peak, sum(pss_mb(p) for p in self.pids))
                self.rss_each_peak = [max(a, b) for a, b in zip(self.rss_each_peak, each,
                                                                strict=True)]
                async with engine.connect() as conn:
                    found = await conn.execute(text(
                        "SELECT count(*) FROM deliveries WHERE state = 'pending'"))
                    self.queue_peak = max(self.queue_peak, int(found.scalar_one()))
                for _ in range(5):  # the healthy server's rows, when they became visible
                    async with engine.connect() as conn:
                        rows = await conn.execute(text(
                            "SELECT id FROM deliveries WHERE host = :host"),
                            {"host": f"127.0.0.1:{HEALTHY_PORT}"})
                        for (row_id,) in rows.all():
                            self.visible.setdefault(row_id, time.time())
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=0.1)
                    except TimeoutError:
                        pass
        finally:
            await engine.dispose()


async def dead_attempts(url: str, dead: list[int]) -> tuple[int, int]:
    """(attempts made to dead hosts, dead hosts paused by the breaker now)."""
    engine = create_async_engine(url)
    hosts = [f"127.0.0.1:{p}" for p in dead]
    try:
        async with engine.connect() as conn:
            tried = (await conn.execute(select(func.coalesce(func.sum(Delivery.attempts), 0))
                                        .where(Delivery.host.in_(hosts)))).scalar_one()
            paused = (await conn.execute(select(func.count()).select_from(Host).where(
                Host.host.in_(hosts), Host.down_until > time.time()))).scalar_one()
        return int(tried), int(paused)
    finally:
        await engine.dispose()


async def stage_times(url: str, token: str) -> dict[int, tuple[float, int]]:
    """Per post index: when fedi had processed the Create (wall clock) and the id of the
    healthy server's delivery row."""
    engine = create_async_engine(url)
    found: dict[int, tuple[float, int]] = {}
    try:
        async with engine.connect() as conn:
            processed = {
                int(m.group(1)): at for uri, at in (await conn.execute(text(
                    "SELECT activity_uri, processed_at FROM inbox_items"))).all()
                if at is not None and (m := re.search(rf"{token}-(\d+)$", uri))
            }
            enqueued = (await conn.execute(text(
                "SELECT o.body, d.id FROM deliveries d JOIN outbound_activities o "
                f"ON o.id = d.activity_id WHERE d.host = '127.0.0.1:{HEALTHY_PORT}'"))).all()
        for body, row_id in enqueued:
            m = re.search(rf"/notes/{token}-(\d+)", body)
            if m and int(m.group(1)) in processed:
                found[int(m.group(1))] = (processed[int(m.group(1))], row_id)
    finally:
        await engine.dispose()
    return found


async def bench(options: Options, db: BenchDatabase) -> None:
    dead = refusing_ports(options.dead)
    base_url = f"http://127.0.0.1:{FEDI_PORT}"
    poster = poster_at(POSTER_PORT)
    group_uri = await prepare(db, base_url, poster, dead, options.baseline)
    url = f"{group_uri}/inbox"
    signed = presign(poster, url, "cavage", options.threads, group_uri)
    token = re.search(r"/notes/([0-9a-f]+)-0", signed[0].body.decode())
    healthy = HealthyInbox(token.group(1) if token else "", options.threads)
    await poster.start()
    await healthy.start()
    serve = launch(db, base_url, ["serve", "--no-worker", "--host", "127.0.0.1",
                                  "--port", str(FEDI_PORT)], "serve")
    worker = launch(db, base_url, ["worker"], "worker")
    sent: dict[int, float] = {}
    statuses: dict[int, int] = {}
    stop = asyncio.Event()
    sampler = Sampler(db.url, (serve.pid, worker.pid))
    try:
        await wait_ready(base_url, serve)
        await asyncio.sleep(2.0)  # the worker's start-up
        rss_start = (rss_mb(serve.pid), rss_mb(worker.pid))
        pss_start = pss_mb(serve.pid) + pss_mb(worker.pid)
        cpu_start = (process_cpu_seconds(serve.pid), process_cpu_seconds(worker.pid))
        sampling = asyncio.create_task(sampler.run(stop))
        spying = pyspy.record(worker.pid, db.directory / "worker.pyspy") if options.py_spy \
            else None
        started = time.perf_counter()
        async with aiohttp.ClientSession() as session:
            for index, item in enumerate(signed):
                sent[index] = time.time()
                async with session.post(url, data=item.body, headers=item.headers) as resp:
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                await asyncio.sleep(max(0.0, started + (index + 1) * options.interval
                                        - time.perf_counter()))
        try:
            await asyncio.wait_for(healthy.all_arrived.wait(), timeout=ARRIVAL_TIMEOUT)
        except TimeoutError:
            pass
        await asyncio.sleep(2.0)  # a last queue and RSS sample with everything relayed
        elapsed = time.perf_counter() - started
        cpu = (process_cpu_seconds(serve.pid) - cpu_start[0],
               process_cpu_seconds(worker.pid) - cpu_start[1])
        stop.set()
        await sampling
        if spying is not None:
            spying.stop()
        pending_end = await sampler.pending()
        tried, paused = await dead_attempts(db.url, dead)
        stages = await stage_times(db.url, healthy.token)
    finally:
        stop.set()
        for process in (serve, worker):
            process.terminate()
        for process in (serve, worker):
            process.wait(timeout=30)
        await healthy.stop()
        await poster.stop()
    waits = sorted(healthy.arrived[i] - sent[i] for i in healthy.arrived if i in sent)
    to_processed = sorted(stages[i][0] - sent[i] for i in stages if i in sent)
    seen = {i: sampler.visible[row_id] for i, (_, row_id) in stages.items()
            if row_id in sampler.visible}
    to_visible = sorted(seen[i] - sent[i] for i in seen if i in sent)
    after_visible = sorted(max(0.0, healthy.arrived[i] - seen[i]) for i in seen
                           if i in healthy.arrived)
    worst = waits[-1] if waits else float("nan")
    report([
        ("machine", describe_machine()),
        ("database", db.kind),
        ("processes", "fedi serve --no-worker + fedi worker, default settings"),
        ("member servers", f"{len(dead)} dead (connection refused) + 1 healthy"),
        ("threads", f"{options.threads}, one every {options.interval} s, from a remote member"),
        ("queued before", f"{options.baseline * len(dead)} deliveries to the dead servers"),
    ], "dead hosts settings")
    verdict_time = "OK" if waits and worst <= GOAL_SECONDS and len(waits) == options.threads \
        else "MISSED"
    verdict_rss = "OK" if sampler.rss_peak <= GOAL_MB else "MISSED"
    report([
        ("POST answers", dict(sorted(statuses.items()))),
        ("healthy server got", f"{len(healthy.arrived)} of {options.threads} posts "
                               f"({healthy.posts} POSTs)"),
        ("POST → healthy server", f"p50 {percentile(waits, 0.5):.2f} s, p99 "
                                  f"{percentile(waits, 0.99):.2f} s, max {worst:.2f} s "
                                  f"(goal ≤ {GOAL_SECONDS:.0f} s: {verdict_time})"),
        ("  inbox processing", f"POST → its relay committed (row visible, polled every 0.1 s) "
                               f"p50 {percentile(to_visible, 0.5):.2f} s, max "
                               f"{to_visible[-1] if to_visible else float('nan'):.2f} s; "
                               f"Create marked processed p50 "
                               f"{percentile(to_processed, 0.5):.2f} s"),
        ("  delivery", f"row visible → healthy server p50 {percentile(after_visible, 0.5):.2f}"
                       f" s, p99 {percentile(after_visible, 0.99):.2f} s, max "
                       f"{after_visible[-1] if after_visible else float('nan'):.2f} s"),
        ("queue peak", f"{sampler.queue_peak} pending deliveries ({pending_end} at the end)"),
        ("RSS serve + worker", f"start {sum(rss_start):.0f} MB ({rss_start[0]:.0f} + "
                               f"{rss_start[1]:.0f}), peak {sampler.rss_peak:.0f} MB (serve "
                               f"{sampler.rss_each_peak[0]:.0f}, worker "
                               f"{sampler.rss_each_peak[1]:.0f}; goal ≤ {GOAL_MB:.0f} MB: "
                               f"{verdict_rss})"),
        ("PSS serve + worker", f"start {pss_start:.0f} MB, peak {sampler.pss_peak:.0f} MB "
                               "(shared pages counted once)"),
        ("CPU", f"serve {cpu[0]:.1f} s, worker {cpu[1]:.1f} s over {elapsed:.1f} s; worker "
                f"{cpu[1] / max(1, options.threads) * 1000:.0f} ms per thread relayed"),
        ("dead servers", f"{tried} connection attempts in all, {paused} of {len(dead)} "
                         "paused by the breaker at the end"),
    ], "dead hosts results")
    log_tail(db.directory / "worker.log")
    if spying is not None:
        print("\n== where the worker's CPU went (py-spy)")
        print(spy_parts(db.directory / "worker.pyspy"))
        print(pyspy.summarize(db.directory / "worker.pyspy", top=15))


SPY_PARTS = ("DeliveryWorker._claim", "DeliveryWorker._record", "DeliveryWorker._send",
             "DeliveryWorker._housekeeping", "InboxProcessor.run_once", "enqueue",
             "sign_request", "_connection_worker_thread")


def spy_parts(path: Path) -> str:
    """Inclusive share of the worker's samples in the parts this benchmark is about."""
    totals = dict.fromkeys(SPY_PARTS, 0)
    total = 0
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count = raw.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        names = {frame.split(" (")[0] for frame in stack.split(";")}
        for part in SPY_PARTS:
            totals[part] += int(count) if part in names else 0
    return "\n".join(f"  {100 * n / max(1, total):5.1f}%  {part}" for part, n in totals.items())


def log_tail(path: Path) -> None:
    """Errors in the worker's log, if any (tracebacks mean the figures are not worth much)."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    errors = [line for line in lines if "ERROR" in line or "Traceback" in line]
    if errors:
        print(f"  worker log: {len(errors)} error lines, first: {errors[0][:200]}")


async def main_async(options: Options) -> None:
    async with throwaway_database(options.database, "deadhosts", options.pg_url) as db:
        await bench(options, db)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.dead_hosts",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--dead", type=int, default=1000, help="dead member servers")
    parser.add_argument("--threads", type=int, default=100, help="threads the member starts")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between threads")
    parser.add_argument("--baseline", type=int, default=0,
                        help="deliveries per dead server queued before the first thread")
    parser.add_argument("--py-spy", action="store_true",
                        help="sample the worker with py-spy and print where its CPU went")
    parser.add_argument("--pg-url", default=None, help="PostgreSQL server (see bench/README)")
    args = parser.parse_args(argv)
    if not 1 <= args.dead <= len(DEAD_PORTS) or args.threads < 1:
        parser.error(f"--dead from 1 to {len(DEAD_PORTS)}, --threads at least 1")
    return Options(args.database, args.dead, args.threads, args.interval, args.baseline,
                   args.pg_url, args.py_spy)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    raise_nofile(4096)
    print(json.dumps({"uptime": os.getloadavg()}))
    run(lambda: main_async(options), use_uvloop=True)


if __name__ == "__main__":
    main()
