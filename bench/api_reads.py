"""python -m bench.api_reads: client-API reads on a big database (issue 10's benchmarks).

Seeds a fresh database (PostgreSQL by default) with `--posts` posts across `--groups` groups
by bulk insert (threads with a few replies each, one thread in ten members-only, a few
authors) and one thread of `--replies` nested replies, then GETs, through the real app in
process (httpx's ASGI transport: no sockets, so the figures are the app's and the database's
work), with a member's bearer token: the home timeline (first page, a page deep down by
max_id, limit 40), the public timeline, notifications, and the big thread's
/statuses/:id/context. One request at a time on one pinned core: prints median and p99 per
request, requests/s and this process's CPU per request. Asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any, cast

import httpx
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import (
    describe_machine,
    percentile,
    pin,
    process_cpu_seconds,
    report,
    run,
    throwaway_database,
)
from fedi.accounts import oauth
from fedi.accounts import scopes as scope_rules
from fedi.actors.local import create_group, create_user
from fedi.api import ratelimit
from fedi.app import create_app
from fedi.config import Settings
from fedi.services import build_services
from fedi.store.migrate import migrate
from fedi.store.models import Follow, Notification, Post

BASE = "http://bench.test"
AUTHORS = 5


@dataclass(frozen=True)
class World:
    token: str  # a member's bearer token (member of half the groups)
    big_thread: int  # id of the thread with many replies
    deep_id: int  # a max_id about half way down the member's home timeline


async def seed(app: Any, posts: int, groups: int, replies: int, per_thread: int) -> World:
    services = app.state.services
    urls = services.urls
    rng = random.Random(10)
    began = time.perf_counter()
    async with services.sessionmaker() as session, session.begin():
        authors = [await create_user(session, urls, f"author{n}") for n in range(AUTHORS)]
        reader = await create_user(session, urls, "reader")
        made = [await create_group(session, urls, f"group{n}", owner="author0")
                for n in range(groups)]
        await session.flush()
        joined = made[: max(1, groups // 2)]
        session.add_all(Follow(follower_id=reader.id, target_id=g.id, state="accepted")
                        for g in joined)
        app_row, _ = await oauth.register_app(
            session, name="bench", redirect_uris=[oauth.OOB],
            scopes=scope_rules.parse("read write"))
        token = (await oauth.issue_token(session, app_row, reader.id,
                                         scope_rules.parse("read"))).access_token
        author_ids = [a.id for a in authors]
        group_ids = [g.id for g in made]
        reader_id = reader.id
    print(f"  people, groups and keys made in {time.perf_counter() - began:.1f} s")
    start = time.time() - posts * 10
    next_id = 1

    def row(n: int, group_id: int, parent: dict[str, Any] | None, at: float,
            **extra: Any) -> dict[str, Any]:
        return {"id": n, "uri": f"{BASE}/posts/a{n}", "author_id": rng.choice(author_ids),
                "group_id": group_id, "in_reply_to": parent["uri"] if parent else None,
                "thread_id": parent["thread_id"] if parent else n, "local": True,
                "content": f"<p>post {n} with some words to render</p>", "published": at,
                "visibility": "public", "reply_policy": "members", "document": "{}",
                "name": None if parent else f"Thread {n}", **extra}

    batch: list[dict[str, Any]] = []
    at = start
    while next_id <= posts - replies - 1:
        group_id = group_ids[next_id % len(group_ids)]
        root = row(next_id, group_id, None, at,
                   visibility="members" if next_id % 10 == 1 else "public",
                   reply_count=per_thread, like_count=rng.randrange(20))
        batch.append(root)
        next_id += 1
        for _ in range(per_thread):
            at += 10
            batch.append(row(next_id, group_id, root, at))
            next_id += 1
        at += 10
    big = row(next_id, group_ids[0], None, at, reply_count=replies)
    next_id += 1
    tree = [big]
    for k in range(replies):  # each answers a random earlier post (30% the newest)
        parent = tree[-1] if rng.random() < 0.3 else rng.choice(tree)
        tree.append(row(next_id, group_ids[0], parent, at + k + 1))
        next_id += 1
    batch += tree
    notes = [{"recipient_id": reader_id, "kind": "mention", "actor_id": author_ids[1],
              "post_id": p["id"], "group_id": p["group_id"]}
             for p in rng.sample(batch, min(500, len(batch)))]
    print(f"  {len(batch):,} rows built in {time.perf_counter() - began:.1f} s")
    await bulk_insert(services.engine, cast(Table, Post.__table__), batch)
    await bulk_insert(services.engine, cast(Table, Notification.__table__), notes)
    print(f"  rows inserted in {time.perf_counter() - began:.1f} s")
    async with services.engine.begin() as conn:
        if services.engine.dialect.name == "postgresql":
            await conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('posts', 'id'), (SELECT max(id) FROM posts))")
            await conn.exec_driver_sql("ANALYZE")
    return World(token, big["id"], next_id // 2)


def _complete(table: Table, rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every column of every row, Python-side defaults filled in (COPY applies none)."""
    # A primary key the rows leave out is the database's to number.
    kept = [c for c in table.columns if not (c.primary_key and c.name not in rows[0])]
    columns = [c.name for c in kept]
    defaults: dict[str, Any] = {}
    for column in kept:
        default = column.default
        if default is not None and getattr(default, "is_scalar", False):
            defaults[column.name] = default.arg  # type: ignore[attr-defined]
        elif default is not None and getattr(default, "is_callable", False):
            defaults[column.name] = default.arg(None)  # type: ignore[attr-defined]
        else:
            defaults[column.name] = None
    return columns, [tuple(row.get(c, defaults[c]) for c in columns) for row in rows]


async def bulk_insert(engine: AsyncEngine, table: Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: one COPY (seconds for 100,000 posts); SQLite: executemany in chunks."""
    if not rows:
        return
    columns, records = _complete(table, rows)
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            raw = await conn.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                table.name, records=records, columns=columns)
            return
        for i in range(0, len(records), 5000):
            await conn.execute(table.insert(), [dict(zip(columns, r, strict=True))
                                                for r in records[i:i + 5000]])


async def measure(http: httpx.AsyncClient, path: str, n: int, warmup: int
                  ) -> tuple[list[float], float, float, int]:
    for _ in range(warmup):
        await http.get(path)
    times: list[float] = []
    size = 0
    cpu = process_cpu_seconds(os.getpid())
    began = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        answer = await http.get(path)
        times.append(time.perf_counter() - t0)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text[:300]}")
        size = len(answer.content)
    wall = time.perf_counter() - began
    return sorted(times), wall, process_cpu_seconds(os.getpid()) - cpu, size


async def main(args: argparse.Namespace) -> None:
    print(describe_machine())
    print(f"this process: {pin(0, None if args.cpu < 0 else args.cpu)}")
    async with throwaway_database(args.database, "api", args.pg_url) as db:
        settings = Settings(base_url=BASE, database_url=db.url, allow_private_addresses=True)
        services = build_services(settings)
        try:
            await migrate(services.engine)
        finally:
            await services.close()
        app = create_app(settings, run_worker=False)
        async with app.router.lifespan_context(app):
            t0 = time.perf_counter()
            world = await seed(app, args.posts, args.groups, args.replies, args.per_thread)
            # One token makes every request here: lift the per-token limit (300 in 5 min).
            app.state.api_limiters = (ratelimit.Limiter(10**9), ratelimit.Limiter(10**9))
            print(f"seeded {args.posts:,} posts in {args.groups} groups and a thread of "
                  f"{args.replies:,} replies on {db.kind} in {time.perf_counter() - t0:.1f} s")
            pages = [
                ("home timeline", "/api/v1/timelines/home", args.requests),
                ("home timeline, limit 40", "/api/v1/timelines/home?limit=40", args.requests),
                ("home timeline, deep (max_id)",
                 f"/api/v1/timelines/home?max_id={world.deep_id}", args.requests),
                ("public timeline", "/api/v1/timelines/public", args.requests),
                ("notifications", "/api/v1/notifications", args.requests),
                (f"context of a {args.replies}-reply thread",
                 f"/api/v1/statuses/{world.big_thread}/context", max(1, args.requests // 4)),
            ]
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {world.token}"}
            async with httpx.AsyncClient(transport=transport, base_url=BASE,
                                         headers=headers) as http:
                for label, path, n in pages:
                    times, wall, cpu, size = await measure(http, path, n, args.warmup)
                    report([("member", (
                        f"median {statistics.median(times) * 1e3:6.1f} ms   "
                        f"p99 {percentile(times, 0.99) * 1e3:6.1f} ms   "
                        f"{n / wall:6.1f} req/s   CPU {cpu / n * 1e3:5.1f} ms/req   "
                        f"{size / 1024:.0f} KiB   (n={n})"))], f"{label}: {path}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api_reads", description=__doc__)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--per-thread", type=int, default=4, help="replies in each thread")
    parser.add_argument("--replies", type=int, default=200, help="replies in the big thread")
    parser.add_argument("--requests", type=int, default=25, help="per endpoint")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: do not)")
    parser.add_argument("--stock-loop", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    run(lambda: main(arguments), use_uvloop=not arguments.stock_loop)
