"""Inbox processing: how fast one worker turns accepted activities into their effects.

    python -m bench.processing [--database sqlite|postgres|both] [--creates N] [--likes N]
                               [--profile] [--cpu 0] [--batch 100]

Activities are stored straight into `inbox_items` as the inbox stores them after checking
their signatures (the actors are already known, as after the inbox's key fetch). The worker
then runs IN THIS PROCESS, pinned to one core, on the code path `fedi worker` runs:
`Services.processor.run_once()` called until the queue is empty, with the process set up as
`fedi worker` sets itself up (uvloop, `runtime.settle_gc()`) and default settings.

Two phases, each timed alone: N Creates of new threads from 100 remote members (each on its
own server) into a group whose relay goes to those 100 servers (enqueued in the same
transaction, never sent here), then Likes from the same 100 actors on 20 of those threads
(100 × 20 = 2,000 by default).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select

from bench.common import (
    BenchDatabase,
    CpuWindow,
    describe_machine,
    pin,
    report,
    run,
    throwaway_database,
)
from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC
from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.runtime import settle_gc
from fedi.services import Services, build_services
from fedi.store.migrate import migrate
from fedi.store.models import Actor, Delivery, Follow, InboxItem, Post, Reaction

BASE_URL = "http://fedi.bench"
GROUP = "benchgroup"
MEMBERS = 100
THREADS = 20


@dataclass(frozen=True)
class Options:
    database: str
    creates: int
    likes: int
    batch: int
    cpu: int | None
    profile: bool
    pg_url: str | None


def member_uri(n: int) -> str:
    return f"https://m{n}.bench.example/users/a{n}"


async def prepare(services: Services) -> str:
    """Schema, a group with MEMBERS remote members, each on its own server; the group's uri."""
    await migrate(services.engine)
    await services.start()
    async with services.sessionmaker() as session, session.begin():
        await create_user(session, services.urls, "owner")
        group = await create_group(session, services.urls, GROUP, owner="owner")
        members = [
            Actor(uri=member_uri(n), type="Person", username=f"a{n}",
                  domain=f"m{n}.bench.example", inbox=f"{member_uri(n)}/inbox",
                  shared_inbox=f"https://m{n}.bench.example/inbox",
                  public_key_pem="unused", key_id=f"{member_uri(n)}#main-key")
            for n in range(MEMBERS)
        ]
        session.add_all(members)
        await session.flush()
        session.add_all(Follow(follower_id=m.id, target_id=group.id, state="accepted")
                        for m in members)
        return group.uri


def create(group_uri: str, n: int) -> tuple[str, str, str]:
    """(activity id, actor, body) of member n % MEMBERS starting thread n."""
    actor = member_uri(n % MEMBERS)
    note = f"{actor}/notes/{n}"
    body = {
        "@context": AS_CONTEXT, "id": f"{note}/activity", "type": "Create", "actor": actor,
        "to": [PUBLIC], "cc": [group_uri],
        "object": {"id": note, "type": "Page", "attributedTo": actor, "name": f"Thread {n}",
                   "content": f"<p>Thread number {n} of the benchmark.</p>",
                   "to": [PUBLIC], "cc": [group_uri], "audience": group_uri,
                   "published": "2026-01-01T00:00:00Z"},
    }
    return body["id"], actor, json.dumps(body)  # type: ignore[return-value]


def like(n: int, thread_uri: str) -> tuple[str, str, str]:
    actor = member_uri(n % MEMBERS)
    body = {"@context": AS_CONTEXT, "id": f"{actor}/likes/{uuid.uuid4().hex}", "type": "Like",
            "actor": actor, "object": thread_uri}
    return body["id"], actor, json.dumps(body)


async def store(services: Services, group_uri: str, items: list[tuple[str, str, str]]) -> None:
    moment = time.time()
    rows = [{"activity_uri": uri, "actor_uri": actor, "recipient": group_uri, "body": body,
             "state": "new", "attempts": 0, "claimed_until": 0.0, "received_at": moment}
            for uri, actor, body in items]
    async with services.sessionmaker() as session, session.begin():
        for start in range(0, len(rows), 1000):
            await session.execute(insert(InboxItem), rows[start:start + 1000])


@dataclass
class Phase:
    name: str
    items: int
    window: CpuWindow
    batches: int
    states: Counter[str]
    effects: str
    profile: pstats.Stats | None


async def drain(services: Services, options: Options, name: str, items: int,
                postgres: bool) -> tuple[CpuWindow, int, pstats.Stats | None]:
    window = CpuWindow(watch_postgres=postgres)
    profiler = cProfile.Profile(time.process_time) if options.profile else None
    batches = 0
    with window.measure():
        if profiler is not None:
            profiler.enable()
        # What poll_loop does while there is work: the next batch at once.
        while await services.processor.run_once(limit=options.batch):
            batches += 1
        if profiler is not None:
            profiler.disable()
    stats = pstats.Stats(profiler) if profiler is not None else None
    return window, batches, stats


async def states(services: Services) -> Counter[str]:
    async with services.sessionmaker() as session:
        rows = await session.execute(select(InboxItem.state, func.count())
                                     .group_by(InboxItem.state))
        found: Counter[str] = Counter()
        for state, count in rows.all():
            found[state] = count
        return found


async def count(services: Services, model: Any) -> int:
    async with services.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def bench(options: Options, db: BenchDatabase) -> list[Phase]:
    services = build_services(Settings(base_url=BASE_URL, database_url=db.url))
    postgres = db.kind == "postgres"
    phases: list[Phase] = []
    try:
        group_uri = await prepare(services)
        await store(services, group_uri, [create(group_uri, n) for n in range(options.creates)])
        settle_gc()
        window, batches, stats = await drain(services, options, "creates", options.creates,
                                             postgres)
        deliveries = await count(services, Delivery)
        phases.append(Phase("Creates", options.creates, window, batches, await states(services),
                            f"{await count(services, Post)} posts, {deliveries} deliveries "
                            "enqueued", stats))
        threads = [member_uri(n % MEMBERS) + f"/notes/{n}"
                   for n in range(min(THREADS, options.creates))]
        likes = [like(n, threads[(n // MEMBERS) % len(threads)]) for n in range(options.likes)]
        await store(services, group_uri, likes)
        before = await states(services)
        window, batches, stats = await drain(services, options, "likes", options.likes, postgres)
        after = await states(services)
        async with services.sessionmaker() as session:
            liked = (await session.execute(select(func.sum(Post.like_count)))).scalar_one()
        phases.append(Phase("Likes", options.likes, window, batches, after - before,
                            f"{await count(services, Reaction)} reactions, like counts sum "
                            f"to {liked}", stats))
    finally:
        await services.close()
    return phases


def by_component(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own CPU time per package (a function's tottime, by the file it is in)."""
    totals: dict[str, float] = defaultdict(float)
    for (path, _line, _name), row in stats.stats.items():  # type: ignore[attr-defined]
        tottime = row[2]
        if "/fedi/" in path:
            key = "fedi." + path.split("/fedi/", 1)[1].split("/")[0].removesuffix(".py")
        elif "site-packages/" in path:
            key = path.split("site-packages/", 1)[1].split("/")[0].removesuffix(".py")
        elif path == "~":
            key = "builtins (C)"
        else:
            key = "python stdlib"
        totals[key] += tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


def print_phase(phase: Phase, db: BenchDatabase) -> None:
    w = phase.window
    rows: list[tuple[str, Any]] = [
        ("items", f"{phase.items} in {phase.batches} batches"),
        ("wall", f"{w.wall:.2f} s"),
        ("processed/s", f"{phase.items / w.wall:,.0f}"),
        ("CPU per item", f"{w.own / phase.items * 1000:.2f} ms (this process, all threads: "
                         f"user {w.own_user:.2f} s, kernel {w.own_system:.2f} s)"),
        ("one core could do", f"{phase.items / w.own:,.0f}/s (items ÷ this process's CPU)"),
        ("states", dict(phase.states)),
        ("effects", phase.effects),
    ]
    if w.postgres is not None:
        rows.append(("postgres server CPU", f"{w.postgres:.2f} s, "
                     f"{w.postgres / phase.items * 1000:.2f} ms per item"))
    rows.append(("machine CPU", f"{w.machine:.2f} s busy (both cores) in {w.wall:.2f} s"))
    report(rows, f"{phase.name} ({db.kind})")
    if phase.profile is not None:
        total = sum(row[2] for row in phase.profile.stats.values())  # type: ignore[attr-defined]
        report([(name, f"{seconds / total:6.1%}  {seconds / phase.items * 1e6:7.0f} µs/item")
                for name, seconds in by_component(phase.profile)[:14]],
               f"{phase.name}: own CPU by component (cProfile, process clock)")
        out = io.StringIO()
        phase.profile.stream = out  # type: ignore[attr-defined]
        phase.profile.sort_stats("cumulative").print_stats(r"fedi/", 30)
        print(out.getvalue().split("\n", 6)[-1] if "\n" in out.getvalue() else out.getvalue())


async def main_async(options: Options) -> None:
    print(f"machine: {describe_machine()}")
    print(f"this process: {pin(0, options.cpu)}")
    kinds = ["sqlite", "postgres"] if options.database == "both" else [options.database]
    for kind in kinds:
        async with throwaway_database(kind, "processing", options.pg_url) as db:
            for phase in await bench(options, db):
                print_phase(phase, db)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--likes", type=int, default=MEMBERS * THREADS)
    parser.add_argument("--batch", type=int, default=100,
                        help="items per run_once (the processor's default is 100)")
    parser.add_argument("--cpu", type=int, default=0, help="pin to this CPU; -1: no pinning")
    parser.add_argument("--profile", action="store_true", help="cProfile each phase (slower)")
    parser.add_argument("--pg-url", default=None)
    args = parser.parse_args(argv)
    return Options(args.database, args.creates, args.likes, args.batch,
                   None if args.cpu < 0 else args.cpu, args.profile, args.pg_url)


def main(argv: list[str] | None = None) -> None:
    run(lambda: main_async(parse_args(argv)), use_uvloop=True)


if __name__ == "__main__":
    main()
