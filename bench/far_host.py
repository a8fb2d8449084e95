"""One far server receiving a long stream (issue 13 item 4): a busy group relays N new threads
to its one member server, which answers every POST after --rtt-ms.

    python -m bench.far_host [--n 1000] [--rtt-ms 250] [--database sqlite|postgres]
                             [--mode process|inprocess|both]

Set-up, in this process: a fresh database, a user and a group, a remote member whose server
is the far host (its actor row and accepted membership written directly: the join flow is
not what is measured), then N threads posted through fedi's own use case (what `fedi post`
does, one transaction each), which queues the group's N Announces for the member's shared
inbox. Nothing is sent while they are queued.

- `process` (default, as admins run it): `fedi worker` with its default settings drains the
  queue; timed from the moment it says it is running to the last arrival.
- `inprocess`: the same queue drained by `DeliveryWorker.run()` of services built with default
  settings in this process (so its per-host limit can be sampled directly).

The far host is its own process (`--far-server`, pinned away from the worker when the
machine has two cores): it sleeps --rtt-ms before answering 202 and reports arrivals, TCP
connections and requests in flight. Printed: deliveries/s, connections opened, requests in
flight at the host over time (the per-host limit as the host sees it) and its peak, the
worker's CPU per delivery, and the machine's load. Target: >= 100 deliveries/s at 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from bench.common import (
    BenchDatabase,
    describe_machine,
    free_port,
    other_cpu,
    pin,
    process_cpu_seconds,
    report,
    run,
    throwaway_database,
)
from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.groups.posting import post_to_group
from fedi.services import build_services
from fedi.store.migrate import migrate
from fedi.store.models import Actor, Delivery, Follow

TARGET_PER_S = 100.0
READY_TIMEOUT = 60.0
SAMPLE_S = 0.5


@dataclass
class Options:
    n: int
    rtt_ms: float
    database: str
    mode: str
    cpu: int | None
    timeout: float
    pg_url: str | None


# -- the far host (its own process) ------------------------------------------------------------
class FarHost:
    def __init__(self, rtt: float) -> None:
        self.rtt = rtt
        self.arrivals: list[float] = []
        self.connections: set[tuple[str, int]] = set()
        self.in_flight = 0
        self.peak = 0
        self.window_peak = 0
        self.samples: list[tuple[float, int]] = []  # (time, most in flight in the window)

    async def inbox(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.connections.add((peer[0], peer[1]))
        await request.read()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.window_peak = max(self.window_peak, self.in_flight)
        self.arrivals.append(time.time())
        try:
            await asyncio.sleep(self.rtt)
            return web.Response(status=202)
        finally:
            self.in_flight -= 1

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"arrivals": self.arrivals, "connections": len(self.connections),
                                  "peak": self.peak, "samples": self.samples})

    async def sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_S)
            if self.window_peak or self.in_flight:
                self.samples.append((time.time(), self.window_peak))
            self.window_peak = self.in_flight


async def serve_far(port: int, rtt: float) -> None:
    host = FarHost(rtt)
    app = web.Application()
    app.router.add_get("/_stats", host.stats)
    app.router.add_post("/{path:.*}", host.inbox)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    sampler = asyncio.create_task(host.sample())
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # EOF: the benchmark is done
    sampler.cancel()
    await runner.cleanup()


# -- set-up ----------------------------------------------------------------------------------
def settings_for(db: BenchDatabase) -> Settings:
    return Settings(base_url="http://127.0.0.1:18201", database_url=db.url,
                    allow_private_addresses=True, instance_name="bench")


async def queue_threads(db: BenchDatabase, far: str, n: int) -> float:
    """The group, its one far member, and n threads queued for it; returns seconds taken."""
    services = build_services(settings_for(db))
    try:
        await migrate(services.engine)
        await services.start()
        async with services.sessionmaker() as session, session.begin():
            owner = await create_user(session, services.urls, "owner")
            group = await create_group(session, services.urls, "busy", owner="owner")
            member = Actor(uri=f"{far}/users/member", type="Person", local=False,
                           username="member", domain=far.split("//")[1], inbox=
                           f"{far}/users/member/inbox", shared_inbox=f"{far}/inbox")
            session.add(member)
            await session.flush()
            session.add(Follow(follower_id=member.id, target_id=group.id, state="accepted"))
        started = time.monotonic()
        for i in range(n):
            async with services.sessionmaker() as session, session.begin():
                await post_to_group(session, services.urls, await session.merge(owner),
                                    await session.merge(group), f"Thread {i} of a busy group.",
                                    title=f"Thread {i}")
        took = time.monotonic() - started
        async with services.sessionmaker() as session:
            queued = (await session.execute(
                select(func.count()).select_from(Delivery)
                .where(Delivery.state == "pending", Delivery.inbox_url == f"{far}/inbox")
            )).scalar_one()
        if queued != n:
            raise RuntimeError(f"{queued} deliveries queued for the far host, not {n}")
        return took
    finally:
        await services.close()


async def far_stats(session: aiohttp.ClientSession, far: str) -> dict[str, Any]:
    async with session.get(f"{far}/_stats") as resp:
        found: dict[str, Any] = await resp.json()
        return found


async def wait_arrivals(session: aiohttp.ClientSession, far: str, n: int,
                        limit_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while True:
        stats = await far_stats(session, far)
        if len(stats["arrivals"]) >= n or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.1)


async def states(db: BenchDatabase) -> dict[str, int]:
    services = build_services(settings_for(db))
    try:
        async with services.sessionmaker() as session:
            rows = await session.execute(
                select(Delivery.state, func.count()).group_by(Delivery.state))
            return {state: int(count) for state, count in rows.all()}
    finally:
        await services.close()


# -- the two ways of draining ----------------------------------------------------------------
@dataclass
class Drained:
    label: str
    started: float  # wall clock: worker ready
    cpu: float  # worker CPU seconds from ready to the last arrival
    stats: dict[str, Any]
    limit_samples: list[tuple[float, int]]  # in-process only: the worker's own limit


def start_worker(env: dict[str, str], db: BenchDatabase) -> subprocess.Popen[bytes]:
    with (db.directory / "worker.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "fedi", "worker"], env=env,
                                cwd=db.directory, stdout=log, stderr=subprocess.STDOUT)


def start_far_host(port: int, rtt_ms: float) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.far_host", "--far-server", "--port", str(port),
         "--rtt-ms", str(rtt_ms)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdout is not None
    if server.stdout.readline().strip() != b"ready":
        raise RuntimeError("the far host did not start")
    return server


async def drain_process(db: BenchDatabase, far: str, options: Options) -> Drained:
    env = dict(os.environ, FEDI_BASE_URL=settings_for(db).base_url, FEDI_DATABASE_URL=db.url,
               FEDI_ALLOW_PRIVATE_ADDRESSES="1", FEDI_INSTANCE_NAME="bench")
    log_path = db.directory / "worker.log"
    worker = start_worker(env, db)
    pin(worker.pid, options.cpu)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while b"worker running" not in log_path.read_bytes():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fedi worker did not start:\n{log_path.read_text()[-3000:]}")
            await asyncio.sleep(0.01)
        started, cpu0 = time.time(), process_cpu_seconds(worker.pid)
        async with aiohttp.ClientSession() as session:
            stats = await wait_arrivals(session, far, options.n, options.timeout)
        cpu = process_cpu_seconds(worker.pid) - cpu0
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return Drained("fedi worker (default settings)", started, cpu, stats, [])


async def drain_inprocess(db: BenchDatabase, far: str, options: Options) -> Drained:
    services = build_services(settings_for(db))
    await services.start()
    pin(0, options.cpu)
    worker = services.delivery
    host = far.split("//")[1]
    stop = asyncio.Event()
    samples: list[tuple[float, int]] = []
    try:
        started, cpu0 = time.time(), time.process_time()
        running = asyncio.create_task(worker.run(stop))

        async def sample() -> None:
            while not stop.is_set():
                samples.append((time.time(), worker.host_limits.limit(host, time.monotonic())))
                await asyncio.sleep(SAMPLE_S)

        sampler = asyncio.create_task(sample())
        async with aiohttp.ClientSession() as session:
            stats = await wait_arrivals(session, far, options.n, options.timeout)
        cpu = time.process_time() - cpu0
        stop.set()
        await running
        await sampler
    finally:
        await services.close()
    return Drained("DeliveryWorker in this process (default settings)", started, cpu, stats,
                   samples)


def print_drained(drained: Drained, options: Options, queued_s: float,
                  queue_states: dict[str, int]) -> float:
    arrivals = sorted(drained.stats["arrivals"])
    got = len(arrivals)
    first = arrivals[0] - drained.started if arrivals else float("nan")
    last = arrivals[-1] - drained.started if arrivals else float("nan")
    steady = (got - 1) / (arrivals[-1] - arrivals[0]) if got > 1 else 0.0
    end_to_end = got / last if got and last > 0 else 0.0
    over_time = " ".join(f"{peak}" for _, peak in drained.stats["samples"])
    rows: list[tuple[str, Any]] = [
        ("threads queued for the far host", f"{options.n} (posted in {queued_s:.1f} s)"),
        ("arrived at the far host", f"{got} of {options.n}"),
        ("first / last arrival", f"{first:.2f} s / {last:.2f} s after the worker was ready"),
        ("deliveries/s, ready to last", f"{end_to_end:.1f}  (target >= {TARGET_PER_S:g})"),
        ("deliveries/s, first to last", f"{steady:.1f}"),
        ("TCP connections opened", drained.stats["connections"]),
        ("in flight at the host, peak", drained.stats["peak"]),
        (f"in flight at the host, per {SAMPLE_S:g} s", over_time or "-"),
        ("worker CPU per delivery", f"{drained.cpu * 1e3 / max(got, 1):.2f} ms "
                                    f"({drained.cpu:.2f} s for {got})"),
        ("rows after", ", ".join(f"{k} {v}" for k, v in sorted(queue_states.items()))),
        ("machine", describe_machine()),
    ]
    if drained.limit_samples:
        rows.insert(8, ("the worker's limit for the host",
                        " ".join(str(limit) for _, limit in drained.limit_samples)))
    report(rows, f"{drained.label}: {options.n} to one host at {options.rtt_ms:g} ms")
    return end_to_end


async def bench(options: Options) -> None:
    port = free_port()
    far = f"http://127.0.0.1:{port}"
    modes = ["process", "inprocess"] if options.mode == "both" else [options.mode]
    for mode in modes:
        server = start_far_host(port, options.rtt_ms)
        try:
            pin(server.pid, other_cpu(options.cpu))
            async with throwaway_database(options.database, "farhost", options.pg_url) as db:
                queued_s = await queue_threads(db, far, options.n)
                drained = await (drain_process(db, far, options) if mode == "process"
                                 else drain_inprocess(db, far, options))
                print_drained(drained, options, queued_s, await states(db))
        finally:
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def parse_args(argv: list[str] | None = None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench.far_host", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rtt-ms", type=float, default=250.0)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--mode", choices=("process", "inprocess", "both"), default="process")
    parser.add_argument("--cpu", type=int, default=0,
                        help="CPU for the worker (the far host gets the other); -1: no pinning")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--far-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    options = Options(args.n, args.rtt_ms, args.database, args.mode,
                      None if args.cpu < 0 else args.cpu, args.timeout, args.pg_url)
    return options, args


def main(argv: list[str] | None = None) -> None:
    options, args = parse_args(argv)
    if args.far_server:
        run(lambda: serve_far(args.port, options.rtt_ms / 1000), use_uvloop=True)
        return
    print(f"bench.far_host: {describe_machine()}", flush=True)
    run(lambda: bench(options), use_uvloop=True)


if __name__ == "__main__":
    main()
