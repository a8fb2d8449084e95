"""Live updates across processes (issue 8 item 6): on PostgreSQL a post stored by any
process — the CLI, or `fedi worker` taking a remote member's reply from the inbox — reaches
the event streams held by every `fedi serve` process of the instance, through NOTIFY.

Real processes on one PostgreSQL database: two `fedi serve --no-worker` (each on its own
port, so the test knows which process holds which stream), one `fedi worker`, the CLI.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest

from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC
from fedi.live.listener import APPLICATION_NAME
from tests.support.databases import using_postgres
from tests.support.instance import FediInstance, eventually
from tests.support.ports import port_of, reserve_port
from tests.support.remote import FakeRemote, RemoteActor
from tests.web.test_live import EventStream

pytestmark = [
    pytest.mark.federation,
    pytest.mark.skipif(not using_postgres(), reason=(
        "several processes share events through PostgreSQL's LISTEN/NOTIFY; on SQLite fedi "
        "serve is one process, tested in process by tests/web/test_live.py")),
]


@asynccontextmanager
async def stream(base_url: str, path: str) -> AsyncIterator[EventStream]:
    async with httpx.AsyncClient(base_url=base_url, timeout=None) as http:
        async with http.stream("GET", path) as response:
            assert response.status_code == 200, await response.aread()
            yield EventStream(response)


def second_server(fedi: FediInstance) -> tuple[subprocess.Popen[bytes], str, Any]:
    """Another `fedi serve` of the same instance (same database), on a port of its own."""
    listener = reserve_port()
    fd = listener.fileno()
    with (fedi.workdir / "second.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fedi", "serve", "--fd", str(fd), "--no-worker"],
            env=fedi.env, cwd=fedi.workdir, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(fd,))
    return process, f"http://127.0.0.1:{port_of(listener)}", listener


async def signed_post(remote: FakeRemote, actor: RemoteActor, inbox: str,
                      activity: dict[str, Any]) -> None:
    activity = {"@context": AS_CONTEXT, "id": f"{actor.uri}/activities/{uuid.uuid4()}",
                "actor": actor.uri, **activity}
    body = json.dumps(activity).encode()
    async with httpx.AsyncClient() as http:
        answer = await http.post(inbox, content=body, headers=remote.signed(actor, inbox, body))
    assert answer.status_code == 202, answer.text


async def test_posts_from_the_cli_and_the_worker_reach_streams_on_every_serve_process(
    instances: list[FediInstance],
) -> None:
    fedi = instances[0]
    fedi.cli("create-user", "olga")
    fedi.cli("create-group", "cats", "--owner", "olga")
    thread_uri = fedi.cli("post", "--as", "olga", "--group", "cats", "--title", "Live",
                          "First").stdout.strip()
    [(thread,)] = await fedi.query("SELECT id FROM posts WHERE uri = :u", u=thread_uri)
    remote = FakeRemote()
    await remote.start()
    rem = remote.add_actor("rem")
    group = f"{fedi.base_url}/groups/cats"

    fedi.start(["--no-worker"])
    fedi.spawn("worker")
    second, second_url, listener = second_server(fedi)
    async with AsyncExitStack() as stack:
        stack.callback(listener.close)
        stack.push_async_callback(remote.stop)
        stack.callback(_end, second)
        await eventually(lambda: _answers(second_url), timeout=60, what="the second server")
        # Both serve processes LISTEN (the worker and the CLI only NOTIFY).
        await eventually(lambda: _listeners(fedi, 2), what="two LISTEN connections")

        path = f"/live/threads/{thread}"
        first = await stack.enter_async_context(stream(fedi.base_url, path))
        other = await stack.enter_async_context(stream(second_url, path))

        # The CLI stores a reply: a process with no stream and no listener of its own.
        by_cli = fedi.cli("post", "--as", "olga", "--group", "cats", "--reply-to", thread_uri,
                          "From the shell").stdout.strip()
        [(cli_id,)] = await fedi.query("SELECT id FROM posts WHERE uri = :u", u=by_cli)
        assert await first.next_id() == cli_id
        assert await other.next_id() == cli_id

        # A remote member's reply, stored by the worker process from the inbox.
        await signed_post(remote, rem, f"{group}/inbox", {"type": "Follow", "object": group})
        await eventually(lambda: _member(fedi, rem.uri), what="rem joined")
        note = {"id": f"{remote.base_url}/objects/{uuid.uuid4()}", "type": "Note",
                "attributedTo": rem.uri, "content": "<p>From afar</p>", "inReplyTo": thread_uri,
                "to": [PUBLIC, group], "audience": group}
        await signed_post(remote, rem, f"{group}/inbox",
                          {"type": "Create", "object": note, "to": note["to"]})
        [(remote_id,)] = await eventually(
            lambda: fedi.query("SELECT id FROM posts WHERE uri = :u", u=note["id"]),
            what="the worker stored the reply")
        assert await first.next_id() == remote_id
        assert await other.next_id() == remote_id

        # A server with an open stream stops promptly: the stream ends, it exits.
        started = time.monotonic()
        second.terminate()
        assert await other.ended(wait=10)
        await asyncio.to_thread(second.wait, 10)
        assert time.monotonic() - started < 10


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


async def _answers(base_url: str) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{base_url}/healthz", timeout=1)).status_code == 200
    except httpx.HTTPError:
        return False


async def _listeners(fedi: FediInstance, count: int) -> bool:
    rows = await fedi.query(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
        "AND datname = current_database()", name=APPLICATION_NAME)
    return bool(rows[0][0] == count)


async def _member(fedi: FediInstance, uri: str) -> bool:
    rows = await fedi.query(
        "SELECT f.state FROM follows f JOIN actors a ON a.id = f.follower_id "
        "WHERE a.uri = :u", u=uri)
    return bool(rows) and rows[0][0] == "accepted"
