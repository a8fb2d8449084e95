"""Helpers shared by the benchmarks: throwaway databases, CPU pinning and accounting, stats."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

PG_ENV = "FEDI_BENCH_POSTGRES_URL"
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
_CLK_TCK = os.sysconf("SC_CLK_TCK")

T = TypeVar("T")


# -- databases ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchDatabase:
    kind: str  # "sqlite" | "postgres"
    url: str  # SQLAlchemy async URL fedi is given
    directory: Path  # scratch directory (the SQLite file, logs, profiles)


def postgres_server_url(override: str | None = None) -> str:
    return override or os.environ.get(PG_ENV, "").strip() or PG_DEFAULT


@contextlib.asynccontextmanager
async def throwaway_database(
    kind: str, label: str, pg_server: str | None = None
) -> AsyncIterator[BenchDatabase]:
    """A fresh SQLite file or PostgreSQL database, removed (DROP ... WITH (FORCE)) afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=f"fedi-bench-{label}-"))
    name = f"bench_{label}_{uuid.uuid4().hex[:10]}"
    server = postgres_server_url(pg_server)
    try:
        if kind == "sqlite":
            path = directory / f"{name}.db"
            yield BenchDatabase(kind, f"sqlite+aiosqlite:///{path}", directory)
            return
        if kind != "postgres":
            raise ValueError(f"unknown database kind {kind!r}")
        admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await admin.dispose()
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        try:
            yield BenchDatabase(kind, url, directory)
        finally:
            admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
            try:
                async with admin.connect() as conn:
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            finally:
                await admin.dispose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def count_rows(url: str, table: str, where: str = "") -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
            return int((await conn.execute(text(sql))).scalar_one())
    finally:
        await engine.dispose()


async def postgres_counters(url: str) -> dict[str, int]:
    """Sessions and commits of the database `url` names, and the server-wide WAL write/fsync
    counts (other databases' traffic shows there too)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            db = (await conn.execute(text(
                "SELECT sessions, xact_commit, xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            ))).one()
            wal = (await conn.execute(text("SELECT wal_write, wal_sync FROM pg_stat_wal"))).one()
    finally:
        await engine.dispose()
    return {"sessions": int(db[0]), "commits": int(db[1]), "rollbacks": int(db[2]),
            "wal_writes": int(wal[0]), "wal_syncs": int(wal[1])}


async def renice_backends(url: str, nice: int, stop: asyncio.Event, every: float = 0.25) -> int:
    """Until `stop` is set, give the PostgreSQL backends serving `url`'s database the
    priority `nice` (the benchmark's own processes have it too); return how many were set.

    Only this database's backends are touched, and they end when it is dropped.
    """
    engine = create_async_engine(url)
    seen: set[int] = set()
    try:
        async with engine.connect() as conn:
            while not stop.is_set():
                rows = await conn.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                ))
                await conn.commit()
                for (pid,) in rows.all():
                    if pid not in seen:
                        seen.add(pid)
                        with contextlib.suppress(OSError):
                            os.setpriority(os.PRIO_PROCESS, pid, nice)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=every)
    finally:
        await engine.dispose()
    return len(seen)


# -- processes and CPUs --------------------------------------------------------------------------
def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards `wanted` (capped by the hard limit); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def pin(pid: int, cpu: int | None) -> str:
    """Pin a process (0 = this one) to one CPU if the machine has it; say what was done."""
    if cpu is None:
        return "not pinned"
    available = os.sched_getaffinity(0) if pid == 0 else set(range(os.cpu_count() or 1))
    if cpu not in available or (os.cpu_count() or 1) < 2:
        return f"not pinned (cpu {cpu} unavailable)"
    os.sched_setaffinity(pid, {cpu})
    return f"cpu {cpu}"


def other_cpu(cpu: int | None) -> int | None:
    if cpu is None or (os.cpu_count() or 1) < 2:
        return None
    return 1 if cpu == 0 else 0


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle, summed over every core, since boot."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _CLK_TCK


def postgres_cpu_seconds() -> float:
    """CPU of every process named postgres, plus what the postmaster's exited children used.

    Covers the whole PostgreSQL server (all databases), so other clients inflate it.
    """
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                raw = handle.read()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        if comm != "postgres":
            continue
        fields = raw.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
        if fields[1] == "1" or _comm(int(fields[1])) != "postgres":  # the postmaster
            total += int(fields[13]) + int(fields[14])
    return total / _CLK_TCK


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


@dataclass
class CpuWindow:
    """CPU used by this process, optionally other pids, PostgreSQL and the machine, over a span."""

    pids: Sequence[int] = ()
    watch_postgres: bool = False
    wall: float = 0.0
    own: float = 0.0
    own_user: float = 0.0
    own_system: float = 0.0
    others: tuple[float, ...] = ()
    postgres: float | None = None
    machine: float = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[CpuWindow]:
        pg0 = postgres_cpu_seconds() if self.watch_postgres else 0.0
        m0 = machine_busy_seconds()
        o0 = [process_cpu_seconds(p) for p in self.pids]
        t0 = os.times()
        c0 = time.process_time()
        w0 = time.perf_counter()
        try:
            yield self
        finally:
            self.wall = time.perf_counter() - w0
            self.own = time.process_time() - c0
            t1 = os.times()
            self.own_user, self.own_system = t1.user - t0.user, t1.system - t0.system
            after = [process_cpu_seconds(p) for p in self.pids]
            self.others = tuple(a - b for a, b in zip(after, o0, strict=True))
            self.machine = machine_busy_seconds() - m0
            if self.watch_postgres:
                self.postgres = postgres_cpu_seconds() - pg0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection in the load generator while it times requests: a full
    collection of its own objects (the pre-signed requests, a task per request) paused it for
    about 100 ms, and an open-loop phase charged that pause to the server as latency."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


@dataclass
class GcTally:
    """CPU time the cyclic garbage collector spends, per generation, while installed."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _started: float = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            generation = info["generation"]
            self.collections[generation] += 1
            self.seconds[generation] += time.process_time() - self._started

    @contextlib.contextmanager
    def measure(self) -> Iterator[GcTally]:
        gc.callbacks.append(self._callback)
        try:
            yield self
        finally:
            gc.callbacks.remove(self._callback)

    def summary(self) -> str:
        total = sum(self.seconds) * 1000
        parts = ", ".join(
            f"gen{g}: {self.collections[g]} in {self.seconds[g] * 1000:.0f} ms" for g in range(3)
        )
        return f"{total:.0f} ms CPU ({parts}); {len(gc.get_objects())} objects tracked"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def describe_machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cpus, load average {load} (other work on the machine skews figures)"


# -- statistics and output -----------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def report(rows: Sequence[tuple[str, Any]], title: str | None = None) -> None:
    if title:
        print(f"\n== {title}")
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    sys.stdout.flush()


def run(main: Callable[[], Any], use_uvloop: bool) -> Any:
    """Run a coroutine function on uvloop (if asked and installed) or the stock loop."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            use_uvloop = False
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main())
    return asyncio.run(main())


def timed_sync(func: Callable[[], T], repeat: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call of `func`, after a short warm-up."""
    for _ in range(min(20, repeat)):
        func()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        func()
    return (
        (time.process_time() - c0) / repeat * 1e6,
        (time.perf_counter() - w0) / repeat * 1e6,
    )
