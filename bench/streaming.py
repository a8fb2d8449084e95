"""Streaming: how long one new post takes to reach N connected streaming clients.

    python -m bench.streaming [--database sqlite|postgres] [--clients 1000]
                              [--stream user|public:local] [--transport ws|sse] [--posts 3]

Starts `fedi serve --no-worker` on a free loopback port with a fresh database, makes
`--people` members of one group (each with a read token), opens `--clients` streams spread
over them (WebSocket with the `websockets` library, or server-sent events with httpx) from
this process, then posts `--posts` replies through the client API (POST /api/v1/statuses),
one at a time, and records when each client receives each one. Prints, per post, the time
from sending the POST to the first and the last client holding the update, and how many got
it. Figures only: nothing is asserted. The clients share this one process's event loop, so
"last" includes the time this process takes to read 1,000 frames.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bench.common import (
    BenchDatabase,
    describe_machine,
    free_port,
    percentile,
    raise_nofile,
    report,
    throwaway_database,
)

START_TIMEOUT = 60.0
CONNECT_BATCH = 100  # handshakes in flight at once


@dataclass
class Options:
    database: str
    clients: int
    people: int
    stream: str
    transport: str
    posts: int
    wait: float
    pg_url: str | None


@dataclass
class Tally:
    """How many clients hold each status; `everyone` is set when all of them hold `wanted`."""

    clients: int
    wanted: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    everyone: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, status_id: str) -> None:
        self.wanted = status_id
        self.everyone.clear()
        if self.counts.get(status_id, 0) >= self.clients:
            self.everyone.set()

    def got(self, status_id: str) -> None:
        self.counts[status_id] = self.counts.get(status_id, 0) + 1
        if status_id == self.wanted and self.counts[status_id] >= self.clients:
            self.everyone.set()


@dataclass
class Client:
    tally: Tally
    arrivals: dict[str, float] = field(default_factory=dict)  # status id -> perf_counter

    def got(self, status_id: str) -> None:
        self.arrivals[status_id] = time.perf_counter()
        self.tally.got(status_id)


class Server:
    def __init__(self, db: BenchDatabase, clients: int) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = db.directory / "fedi-serve.log"
        self.env = dict(os.environ, FEDI_BASE_URL=self.base_url, FEDI_DATABASE_URL=db.url,
                        FEDI_ALLOW_PRIVATE_ADDRESSES="1", FEDI_INSTANCE_NAME="bench",
                        FEDI_LIVE_MAX_STREAMS=str(clients + 100))
        self.cwd = db.directory
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fedi", "serve", "--no-worker", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"fedi serve exited early:\n{self.log()}")
                try:
                    if (await http.get(f"{self.base_url}/api/v1/streaming/health",
                                       timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"fedi serve did not start in {START_TIMEOUT:g} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


async def prepare(db: BenchDatabase, base_url: str, people: int) -> tuple[list[str], str, str]:
    """People in one group, a read token each; the poster's write token; the thread's id."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from fedi.accounts import oauth
    from fedi.accounts import scopes as scope_rules
    from fedi.actors.local import create_group, create_user
    from fedi.groups.membership import join_local_group
    from fedi.groups.posting import post_to_group
    from fedi.store.db import make_sessionmaker
    from fedi.urls import Urls

    urls = Urls(base_url)
    engine = create_async_engine(db.url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            owner = await create_user(session, urls, "poster")
            await session.flush()
            group = await create_group(session, urls, "bench", owner="poster")
            app, _ = await oauth.register_app(session, name="bench", redirect_uris=[oauth.OOB],
                                              scopes=scope_rules.parse("read write"))
            tokens = []
            for n in range(people):
                member = await create_user(session, urls, f"reader{n}")
                await session.flush()
                await join_local_group(session, urls, group, member)
                issued = await oauth.issue_token(session, app, member.id,
                                                 scope_rules.parse("read"))
                tokens.append(issued.access_token)
            writer = await oauth.issue_token(session, app, owner.id,
                                             scope_rules.parse("read write"))
            thread = await post_to_group(session, urls, owner, group, "Streams, one by one",
                                         title="The benchmark's thread")
        return tokens, writer.access_token, str(thread.post.id)
    finally:
        await engine.dispose()


async def ws_client(base_url: str, stream: str, token: str, client: Client,
                    connected: asyncio.Event, stop: asyncio.Event) -> None:
    url = base_url.replace("http://", "ws://") + f"/api/v1/streaming?stream={stream}"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                       open_timeout=60, max_queue=None) as socket:
        connected.set()
        while not stop.is_set():
            frame = json.loads(await socket.recv())
            if frame.get("event") == "update":
                client.got(json.loads(frame["payload"])["id"])


async def sse_client(http: httpx.AsyncClient, stream: str, token: str, client: Client,
                     connected: asyncio.Event, stop: asyncio.Event) -> None:
    path = "/api/v1/streaming/" + stream.replace(":", "/")
    async with http.stream("GET", path, headers={"Authorization": f"Bearer {token}"}) as answer:
        connected.set()
        async for line in answer.aiter_lines():
            if line.startswith("data: "):
                client.got(json.loads(line[6:])["id"])
            if stop.is_set():
                return


async def open_clients(options: Options, base_url: str, tokens: Sequence[str],
                       stop: asyncio.Event) -> tuple[list[Client], list[asyncio.Task[None]], float]:
    tally = Tally(options.clients)
    clients = [Client(tally) for _ in range(options.clients)]
    tasks: list[asyncio.Task[None]] = []
    http = httpx.AsyncClient(base_url=base_url, timeout=None, limits=httpx.Limits(
        max_connections=options.clients + 10))
    started = time.perf_counter()
    for first in range(0, options.clients, CONNECT_BATCH):
        batch = []
        for n in range(first, min(first + CONNECT_BATCH, options.clients)):
            ready = asyncio.Event()
            token = tokens[n % len(tokens)]
            opened = (ws_client(base_url, options.stream, token, clients[n], ready, stop)
                      if options.transport == "ws" else
                      sse_client(http, options.stream, token, clients[n], ready, stop))
            tasks.append(asyncio.create_task(opened))
            batch.append(ready)
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in batch)), 60)
    return clients, tasks, time.perf_counter() - started


async def post_once(base_url: str, writer: str, thread: str, n: int) -> tuple[str, float, float]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        sent = time.perf_counter()
        answer = await http.post("/api/v1/statuses", headers={
            "Authorization": f"Bearer {writer}"}, data={
            "status": f"Reply {n} for the streams", "in_reply_to_id": thread,
            "visibility": "public"})
        answered = time.perf_counter()
    if answer.status_code != 200:
        raise RuntimeError(f"POST /api/v1/statuses answered {answer.status_code}: "
                           f"{answer.text[:300]}")
    return str(answer.json()["id"]), sent, answered - sent


async def main(options: Options) -> None:
    print(describe_machine())
    raise_nofile(options.clients * 2 + 256)  # the server (a child) inherits it too
    async with throwaway_database(options.database, "streaming", options.pg_url) as db:
        server = Server(db, options.clients)
        server.launch()
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            await server.wait_ready()  # serve has migrated the database
            tokens, writer, thread = await prepare(db, server.base_url, options.people)
            clients, tasks, connect_s = await open_clients(options, server.base_url, tokens,
                                                           stop)
            report([("database", db.kind), ("transport", options.transport),
                    ("stream", options.stream), ("clients", options.clients),
                    ("people (tokens)", options.people),
                    ("all connected in", f"{connect_s:.2f} s")], "setup")
            for n in range(options.posts):
                status_id, sent, post_s = await post_once(server.base_url, writer, thread, n)
                clients[0].tally.expect(status_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(clients[0].tally.everyone.wait(), options.wait)
                times = sorted(c.arrivals[status_id] - sent for c in clients
                               if status_id in c.arrivals)
                report([("POST answered in", f"{post_s * 1000:.0f} ms"),
                        ("received by", f"{len(times)} of {len(clients)}"),
                        ("first client", f"{times[0] * 1000:.0f} ms" if times else "-"),
                        ("median client", f"{percentile(times, 0.5) * 1000:.0f} ms"
                         if times else "-"),
                        ("last client", f"{times[-1] * 1000:.0f} ms" if times else "-")],
                       f"post {n + 1}")
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            server.stop()
            failures = [line for line in server.log().splitlines() if "Traceback" in line]
            if failures:
                print(f"\nthe server logged {len(failures)} tracebacks; its log:\n{server.log()}")


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--people", type=int, default=20,
                        help="distinct people (tokens) the clients are spread over")
    parser.add_argument("--stream", default="user",
                        choices=("user", "public", "public:local"))
    parser.add_argument("--transport", choices=("ws", "sse"), default="ws")
    parser.add_argument("--posts", type=int, default=3)
    parser.add_argument("--wait", type=float, default=30.0,
                        help="seconds to wait for every client to get a post")
    parser.add_argument("--pg-url", default=None)
    args: Any = parser.parse_args(argv)
    return Options(args.database, args.clients, args.people, args.stream, args.transport,
                   args.posts, args.wait, args.pg_url)


if __name__ == "__main__":
    asyncio.run(main(parse()))
