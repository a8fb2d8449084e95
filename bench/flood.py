"""Flood: a burst of valid signed activities against `fedi serve` with its worker running.

    python -m bench.flood [--database sqlite|postgres] [--requests N] [--concurrency C]
                          [--max-queue Q] [--host-rate R] [--host-burst B] [--retry]

One remote host floods the shared inbox (N activities, C in flight) while a second host sends
one activity every 0.2 s. The inbox queue's depth (`inbox_items` in state `new`) is sampled
every 0.1 s. Afterwards the benchmark waits for the queue to drain and checks that every
activity answered 202 was processed and that nothing refused was stored. With `--retry` the
flooding host behaves like a well-mannered server: it sends what was refused again after the
`Retry-After` it was given, until everything is accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import (
    BenchDatabase,
    describe_machine,
    free_port,
    raise_nofile,
    report,
    run,
    throwaway_database,
)
from bench.inbox import FakeActor, Signed, prepare_database, presign

START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 900.0


@dataclass
class Options:
    database: str
    requests: int
    concurrency: int
    max_queue: int
    max_age: int
    host_rate: int
    host_burst: int
    retry: bool
    pg_url: str | None
    rate: float | None = None  # open loop: the flood's requests/s (e.g. 2x the inbox's capacity)


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)  # every answer, retries included
    accepted: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # refused and never accepted later
    first_error: str = ""
    offered: float = 0.0  # --rate: the rate the first round was actually sent at

    def record(self, uri: str, status: int, body: bytes) -> None:
        self.statuses[status] += 1
        if status == 202:
            self.accepted.add(uri)
            self.refused.discard(uri)
        else:
            self.refused.add(uri)
            if not self.first_error:
                self.first_error = f"{status}: {body[:200].decode(errors='replace')}"


class QueueSampler:
    """The inbox queue's depth, polled from the database; keeps the peak."""

    def __init__(self, url: str) -> None:
        self._engine = create_async_engine(url)
        self.peak = 0
        self.last = 0

    async def depth(self) -> int:
        async with self._engine.connect() as conn:
            found = await conn.execute(
                text("SELECT count(*) FROM inbox_items WHERE state = 'new'"))
            return int(found.scalar_one())

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.last = await self.depth()
            self.peak = max(self.peak, self.last)
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.1)
            except TimeoutError:
                pass

    async def states(self) -> dict[str, str]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(text("SELECT activity_uri, state FROM inbox_items"))
            return {uri: state for uri, state in rows.all()}

    async def close(self) -> None:
        await self._engine.dispose()


def start_fedi(db: BenchDatabase, port: int, options: Options) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, FEDI_BASE_URL=f"http://127.0.0.1:{port}", FEDI_DATABASE_URL=db.url,
        FEDI_ALLOW_PRIVATE_ADDRESSES="1", FEDI_INSTANCE_NAME="flood",
        FEDI_INBOX_MAX_QUEUE=str(options.max_queue),
        FEDI_INBOX_MAX_AGE_SECONDS=str(options.max_age),
        FEDI_INBOX_HOST_RATE=str(options.host_rate),
        FEDI_INBOX_HOST_BURST=str(options.host_burst),
    )
    with (db.directory / "fedi-serve.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "fedi", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=db.directory, stdout=log, stderr=subprocess.STDOUT,
        )


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


async def send(
    session: aiohttp.ClientSession, url: str, items: list[Signed], concurrency: int,
    tally: Tally,
) -> int:
    """Send `items` with `concurrency` in flight; returns the longest Retry-After seen."""
    queue = iter(items)
    longest = 0

    async def one_connection() -> None:
        nonlocal longest
        for item in queue:
            uri = json.loads(item.body)["id"]
            try:
                async with session.post(url, data=item.body, headers=item.headers) as resp:
                    body = await resp.read()
                    status, retry = resp.status, resp.headers.get("Retry-After", "")
            except (aiohttp.ClientError, TimeoutError) as exc:  # not accepted: resent
                status, body, retry = -1, repr(exc).encode(), ""
            tally.record(uri, status, body)
            if retry.isdigit():
                longest = max(longest, int(retry))

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return longest


async def send_at_rate(
    session: aiohttp.ClientSession, url: str, items: list[Signed], rate: float, tally: Tally,
) -> int:
    """Open loop: item i goes at start + i / rate whatever the answers to earlier ones (a
    flood does not slow down because the server does); returns the longest Retry-After."""
    longest = 0

    async def one(item: Signed) -> None:
        nonlocal longest
        longest = max(longest, await send(session, url, [item], 1, tally))

    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for index, item in enumerate(items):
        if (delay := started + index / rate - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(item)))
    tally.offered = len(items) / max(time.perf_counter() - started, 1e-9)
    await asyncio.gather(*tasks)
    return longest


async def flood(
    session: aiohttp.ClientSession, url: str, items: list[Signed], options: Options,
    tally: Tally, first_round: list[float],
) -> int:
    """The flood, and with --retry its resends; returns the number of rounds."""
    by_uri = {json.loads(item.body)["id"]: item for item in items}
    pending = items
    rounds = 0
    while pending:
        rounds += 1
        round_started = time.perf_counter()
        if options.rate is not None and rounds == 1:
            wait = await send_at_rate(session, url, pending, options.rate, tally)
        else:
            wait = await send(session, url, pending, options.concurrency, tally)
        if rounds == 1:
            first_round += [len(tally.accepted), time.perf_counter() - round_started]
        if not options.retry:
            break
        pending = [by_uri[uri] for uri in tally.refused if uri in by_uri]
        if pending:
            await asyncio.sleep(max(wait, 1))
    return rounds


async def calm_sender(
    session: aiohttp.ClientSession, url: str, items: list[Signed], stop: asyncio.Event,
    tally: Tally,
) -> None:
    for item in items:
        if stop.is_set():
            return
        await send(session, url, [item], 1, tally)
        await asyncio.sleep(0.2)


async def bench(options: Options, db: BenchDatabase) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    group_uri = await prepare_database(db, base_url)
    url = f"{base_url}/inbox"
    flooder, calm = FakeActor(), FakeActor()
    await flooder.start()
    await calm.start()
    flood_items = presign(flooder, url, "cavage", options.requests, group_uri)
    calm_items = presign(calm, url, "cavage", 2000, group_uri)
    process = start_fedi(db, port, options)
    sampler = QueueSampler(db.url)
    flooded, calmed = Tally(), Tally()
    first_round: list[float] = []  # accepted and seconds of the first round
    stop_sampling, stop_calm = asyncio.Event(), asyncio.Event()
    try:
        await wait_ready(base_url, process)
        sampling = asyncio.create_task(sampler.run(stop_sampling))
        # Idle connections dropped before the server's keep-alive timeout (5 s) closes them.
        in_flight = options.concurrency if options.rate is None else max(options.concurrency, 512)
        connector = aiohttp.TCPConnector(limit=in_flight + 4, keepalive_timeout=3)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            started = time.perf_counter()
            calming = asyncio.create_task(
                calm_sender(session, url, calm_items, stop_calm, calmed))
            rounds = await flood(session, url, flood_items, options, flooded, first_round)
            flood_s = time.perf_counter() - started
            stop_calm.set()
            await calming
        for _ in range(int(DRAIN_TIMEOUT / 0.2)):  # bounded wait for the worker
            if not await sampler.depth():
                break
            await asyncio.sleep(0.2)
        drained_s = time.perf_counter() - started
        stop_sampling.set()
        await sampling
        states = await sampler.states()
    finally:
        await sampler.close()
        process.terminate()
        process.wait(timeout=30)
        await flooder.stop()
        await calm.stop()
    print_results(options, db, flooded, calmed, states, sampler.peak, rounds, flood_s, drained_s,
                  int(first_round[0]) if first_round else 0,
                  first_round[1] if first_round else 0.0)


def print_results(
    options: Options, db: BenchDatabase, flooded: Tally, calmed: Tally, states: dict[str, str],
    peak: int, rounds: int, flood_s: float, drained_s: float, first_accepted: int = 0,
    first_s: float = 0.0,
) -> None:
    accepted = flooded.accepted | calmed.accepted
    lost = [uri for uri in accepted if uri not in states]
    unprocessed = [uri for uri in accepted if states.get(uri) not in (None, "done")]
    stray = [uri for uri in states if uri not in accepted]
    refused_answers = sum(n for status, n in flooded.statuses.items() if status != 202)
    verdict = "OK" if not (lost or unprocessed or stray) else "FAILED"
    report([
        ("machine", describe_machine()),
        ("database", db.kind),
        ("server", "fedi serve (one process, with its worker)"),
        ("flood", f"{options.requests} activities from one host, " + (
            f"{options.concurrency} in flight" if options.rate is None else
            f"open loop at {options.rate:.0f}/s") + "; another host sends one every 0.2 s"),
        ("limits", f"queue {options.max_queue}, age {options.max_age} s, per host "
                   f"{options.host_rate}/s burst {options.host_burst}"),
        ("resend refused after Retry-After", "yes" if options.retry else "no"),
    ], "flood settings")
    report([
        ("flooding host: answers", dict(sorted(flooded.statuses.items()))),
        ("flooding host: accepted (202)", f"{len(flooded.accepted)} of {options.requests}"
                                          f" in {rounds} round(s)"),
        ("flooding host: refused answers", refused_answers),
        ("flood: offered rate", f"{flooded.offered:.0f}/s (open loop), accepted "
                                f"{first_accepted / max(first_s, 1e-9):.0f}/s in that round"
         if options.rate is not None else "closed loop (--concurrency)"),
        ("processed (done)", sum(1 for uri in accepted if states.get(uri) == "done")),
        ("other host: answers", dict(sorted(calmed.statuses.items()))),
        ("inbox queue peak", f"{peak} activities waiting"),
        ("flood phase", f"{flood_s:.1f} s"),
        ("until the queue drained", f"{drained_s:.1f} s from the start"),
        ("every 202 processed", f"{verdict}: {len(accepted)} accepted, {len(lost)} lost, "
                                f"{len(unprocessed)} not done, {len(stray)} stored without 202"),
    ], "flood results")
    if flooded.first_error:
        print(f"  first refusal: {flooded.first_error}")


async def main_async(options: Options) -> None:
    async with throwaway_database(options.database, "flood", options.pg_url) as db:
        await bench(options, db)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.flood",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--requests", type=int, default=5000, help="activities in the flood")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight")
    parser.add_argument("--max-queue", type=int, default=10_000, help="FEDI_INBOX_MAX_QUEUE")
    parser.add_argument("--max-age", type=int, default=600, help="FEDI_INBOX_MAX_AGE_SECONDS")
    parser.add_argument("--host-rate", type=int, default=30, help="FEDI_INBOX_HOST_RATE")
    parser.add_argument("--host-burst", type=int, default=300, help="FEDI_INBOX_HOST_BURST")
    parser.add_argument("--retry", action="store_true",
                        help="resend refused activities after their Retry-After")
    parser.add_argument("--rate", type=float, default=None, metavar="R",
                        help="send the flood open loop at R requests/s (e.g. twice the "
                             "capacity bench.inbox measured) instead of --concurrency in flight")
    parser.add_argument("--pg-url", default=None, help="PostgreSQL server (see bench/README)")
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency) < 1:
        parser.error("--requests and --concurrency must be at least 1")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    return Options(args.database, args.requests, args.concurrency, args.max_queue,
                   args.max_age, args.host_rate, args.host_burst, args.retry, args.pg_url,
                   args.rate)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    raise_nofile(options.concurrency * 2 + 1024)
    run(lambda: main_async(options), use_uvloop=True)


if __name__ == "__main__":
    main()
