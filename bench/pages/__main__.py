"""python -m bench.pages: render times of the reading pages on a big thread and a big group.

Seeds a fresh database (PostgreSQL by default) with a group of `--threads` threads (a few
replies each, one in ten members-only) and one thread of `--replies` nested replies, then
GETs each page through the real app in process (httpx's ASGI transport: no sockets, so the
figures are the app's and the database's work) as an anonymous reader and as a signed-in
member. Prints median and p99 per request and requests/s; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import event, insert, select

from bench.common import describe_machine, percentile, report, run, throwaway_database
from fedi.accounts import sessions
from fedi.actors.local import create_group, create_user
from fedi.app import create_app
from fedi.config import Settings
from fedi.services import build_services
from fedi.store.migrate import migrate
from fedi.store.models import Follow, Post

BASE = "http://bench.test"


@dataclass(frozen=True)
class World:
    big_thread: str  # path of the thread with many replies
    cookie: str  # a member's session


async def seed(app: Any, threads: int, replies: int, per_thread: int) -> World:
    services = app.state.services
    urls = services.urls
    rng = random.Random(8)
    async with services.sessionmaker() as session, session.begin():
        owner = await create_user(session, urls, "owner")
        reader = await create_user(session, urls, "reader")
        group = await create_group(session, urls, "big", owner="owner")
        await session.flush()
        session.add(Follow(follower_id=reader.id, target_id=group.id, state="accepted"))
        cookie = await sessions.start(session, reader.id, "bench", days=1)
        ids = (owner.id, group.id)
    owner_id, group_id = ids
    start = time.time() - threads * 60
    next_id = 1

    def row(n: int, parent: dict[str, Any] | None, at: float, **extra: Any) -> dict[str, Any]:
        return {"id": n, "uri": f"{BASE}/posts/b{n}", "author_id": owner_id,
                "group_id": group_id, "in_reply_to": parent["uri"] if parent else None,
                "thread_id": parent["thread_id"] if parent else n, "local": True,
                "content": f"<p>post {n} with some words to render</p>", "published": at,
                "visibility": "public", "reply_policy": "members", "document": "{}",
                "name": None if parent else f"Thread {n}", **extra}

    batch: list[dict[str, Any]] = []
    for t in range(threads):
        root = row(next_id, None, start + t * 60,
                   visibility="members" if t % 10 == 0 else "public",
                   reply_count=per_thread, like_count=rng.randrange(20))
        next_id += 1
        batch.append(root)
        for k in range(per_thread):
            batch.append(row(next_id, root, root["published"] + k + 1))
            next_id += 1
    big = row(next_id, None, time.time() - 3600, reply_count=replies)
    next_id += 1
    tree = [big]
    for k in range(replies):  # each reply answers a random earlier post of the thread
        parent = tree[-1] if rng.random() < 0.3 else rng.choice(tree)
        tree.append(row(next_id, parent, big["published"] + k + 1))
        next_id += 1
    batch += tree
    async with services.sessionmaker() as session, session.begin():
        for i in range(0, len(batch), 2000):
            await session.execute(insert(Post), batch[i:i + 2000])
    async with services.engine.begin() as conn:
        if services.engine.dialect.name == "postgresql":
            await conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('posts', 'id'), (SELECT max(id) FROM posts))")
            await conn.exec_driver_sql("ANALYZE")
    async with services.sessionmaker() as session:
        assert (await session.execute(select(Post.id).where(Post.id == big["id"]))).scalar()
    return World(f"/posts/b{big['id']}", cookie)


async def more_replies(http: httpx.AsyncClient, thread: str) -> str | None:
    """Where the thread page's first "more replies" link goes (a post's replies after those
    drawn, or a cut branch continued on its post's page), if it has one."""
    found = re.search(rf'<p class="meta more"><a href="{BASE}(/posts/b[^"]+)"',
                      (await http.get(thread)).text)
    return found.group(1) if found else None


async def measure(http: httpx.AsyncClient, path: str, n: int, cookie: str | None,
                  warmup: int) -> tuple[list[float], float, float, int]:
    """Each request's time, the wall time of all, this process's CPU seconds per request
    (the app's own work: on a shared machine less skewed than wall times), the page size."""
    cookies = {"fedi_session": cookie} if cookie else {}
    for _ in range(warmup):
        await http.get(path, cookies=cookies)
    times: list[float] = []
    size = 0
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        answer = await http.get(path, cookies=cookies)
        times.append(time.perf_counter() - t0)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text[:300]}")
        size = len(answer.content)
    cpu = (time.process_time() - cpu) / max(1, n)
    return sorted(times), time.perf_counter() - began, cpu, size


async def main(args: argparse.Namespace) -> None:
    print(describe_machine())
    async with throwaway_database(args.database, "pages", args.pg_url) as db:
        settings = Settings(base_url=BASE, database_url=db.url, allow_private_addresses=True)
        services = build_services(settings)
        try:
            await migrate(services.engine)
        finally:
            await services.close()
        # The garbage collector tuned as `fedi serve` tunes it (--stock-gc: Python's defaults).
        app = create_app(settings, run_worker=False, tune_gc=not args.stock_gc)
        async with app.router.lifespan_context(app):
            t0 = time.perf_counter()
            world = await seed(app, args.threads, args.replies, args.per_thread)
            print(f"seeded {args.threads:,} threads and a thread of {args.replies:,} replies "
                  f"on {db.kind} in {time.perf_counter() - t0:.1f} s")
            pages = [
                ("thread of replies", world.big_thread, args.requests),
                ("group, hot", "/groups/big", args.requests),
                ("group, new", "/groups/big?sort=new", args.requests),
                ("group, active", "/groups/big?sort=active", args.requests),
                ("group, page 200 (new)", "/groups/big?sort=new&page=200", args.requests),
                ("front page", "/", args.requests),
                ("home feed", "/home", args.requests),
            ]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
                following = await more_replies(http, world.big_thread)
                if following is not None:
                    pages.insert(1, ("thread, more replies", following, args.requests))
                if args.only:
                    pages = [p for p in pages if any(o in p[0] for o in args.only)]
                if args.sql:
                    await _show_sql(app, http, pages, world.cookie)
                    return
                for label, path, n in pages:
                    rows = []
                    for reader, cookie in (("anonymous", None), ("signed in", world.cookie)):
                        if path == "/home" and cookie is None:
                            continue
                        profiler = cProfile.Profile() if args.profile else None
                        if profiler is not None:
                            profiler.enable()
                        times, wall, cpu, size = await measure(
                            http, path, n, cookie, args.warmup)
                        if profiler is not None:
                            profiler.disable()
                            print(f"\n-- profile of {label}, {reader} ({n} requests)")
                            print(_top(profiler, args.profile))
                        rows.append((f"{reader:<9}", (
                            f"median {statistics.median(times) * 1e3:6.1f} ms   "
                            f"p99 {percentile(times, 0.99) * 1e3:6.1f} ms   "
                            f"CPU {cpu * 1e3:6.1f} ms   "
                            f"{n / wall:6.1f} req/s   {size / 1024:.0f} KiB   (n={n})")))
                    report(rows, f"{label}: {path}")


async def _show_sql(app: Any, http: httpx.AsyncClient, pages: list[tuple[str, str, int]],
                    cookie: str) -> None:
    """Each page's SQL statements for one request per reader, slowest first, with their
    database time (statement sent to rows fetched)."""
    engine = app.state.services.engine.sync_engine
    seen: list[tuple[float, str]] = []
    started: list[float] = []

    def before(*_args: Any) -> None:
        started.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append((time.perf_counter() - started.pop(), " ".join(statement.split())))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    for label, path, _n in pages:
        for reader, jar in (("anonymous", None), ("signed in", cookie)):
            if path == "/home" and jar is None:
                continue
            cookies = {"fedi_session": jar} if jar else {}
            await http.get(path, cookies=cookies)  # warm
            seen.clear()
            t0 = time.perf_counter()
            await http.get(path, cookies=cookies)
            wall = time.perf_counter() - t0
            total = sum(t for t, _ in seen)
            print(f"\n-- {label}, {reader}: {len(seen)} statements, {total * 1e3:.1f} ms in "
                  f"the database of {wall * 1e3:.1f} ms")
            for took, text in sorted(seen, reverse=True):
                print(f"  {took * 1e3:6.2f} ms  {text[:160]}")
    event.remove(engine, "before_cursor_execute", before)
    event.remove(engine, "after_cursor_execute", after)


def _top(profiler: cProfile.Profile, lines: int) -> str:
    """The functions that took the most time of their own, and the most time under them."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--per-thread", type=int, default=2, help="replies in each thread")
    parser.add_argument("--replies", type=int, default=1_000, help="replies in the big thread")
    parser.add_argument("--requests", type=int, default=200, help="per page and reader")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--stock-loop", action="store_true")
    parser.add_argument("--stock-gc", action="store_true",
                        help="Python's garbage collector settings, not fedi serve's")
    parser.add_argument("--only", action="append", default=[], metavar="LABEL",
                        help="only the pages whose label contains this (repeatable): "
                             "'thread', 'hot', 'front' …")
    parser.add_argument("--profile", type=int, default=0, metavar="LINES",
                        help="cProfile each page's timed requests (slower: read proportions "
                             "only) and print this many functions by own and total time")
    parser.add_argument("--sql", action="store_true",
                        help="print each page's SQL statements and their times, then stop")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    run(lambda: main(arguments), use_uvloop=not arguments.stock_loop)
