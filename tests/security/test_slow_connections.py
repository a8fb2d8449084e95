"""Issue 12 item 9: idle and slow connections are closed after a timeout (slowloris).

Many sockets open to a real `fedi serve` and trickle a request a byte at a time, or send
nothing; the server must close each within its deadline (answering 408 with the reason when
a request had begun), keep serving ordinary requests meanwhile, and log no traceback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.instance import FediInstance

pytestmark = pytest.mark.federation

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2
KEEPALIVE_TIMEOUT = 1
SLACK = 3.0  # a loaded two-core machine
SOCKETS = 30
TRICKLE_EVERY = 0.25  # seconds between bytes: the request never completes in time


@dataclass
class Outcome:
    closed_after: float | None  # seconds from connecting; None: still open at the end
    answer: bytes


@pytest.fixture
async def fedi(tmp_path: Path, database_url: str) -> AsyncIterator[FediInstance]:
    instance = FediInstance("slow", database_url, tmp_path)
    instance.cli("create-user", "owner")
    instance.cli("create-group", "cats", "--owner", "owner")
    instance.start(env={
        "FEDI_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "FEDI_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "FEDI_HTTP_KEEPALIVE_TIMEOUT": str(KEEPALIVE_TIMEOUT),
    })
    yield instance
    instance.stop()


async def trickle(port: int, head: bytes, drip: bytes, limit: float) -> Outcome:
    """Send `head` at once, then `drip` one byte every TRICKLE_EVERY s, until the server
    closes the connection or `limit` seconds pass."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""

    async def read_until_closed() -> None:
        nonlocal answer
        while chunk := await reader.read(4096):
            answer += chunk

    reading = asyncio.create_task(read_until_closed())
    try:
        if head:
            writer.write(head)
        for byte in drip:
            if reading.done() or time.monotonic() - started > limit:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.wait([reading], timeout=TRICKLE_EVERY)
        remaining = limit - (time.monotonic() - started)
        if not reading.done() and remaining > 0:
            await asyncio.wait([reading], timeout=remaining)
    except (ConnectionError, OSError):
        await asyncio.wait([reading], timeout=1)
    closed = reading.done()
    elapsed = time.monotonic() - started
    reading.cancel()
    writer.close()
    return Outcome(elapsed if closed else None, answer)


def request_head(fedi: FediInstance, length: int | None = None) -> bytes:
    lines = ["POST /groups/cats/inbox HTTP/1.1", f"Host: {fedi.domain}",
             "Content-Type: application/activity+json", "User-Agent: slowloris"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def assert_served_meanwhile(fedi: FediInstance) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"{fedi.base_url}/.well-known/nodeinfo")
    assert response.status_code == 200


async def test_trickled_request_heads_are_cut_off(fedi: FediInstance) -> None:
    limit = HEADER_TIMEOUT + SLACK
    head = request_head(fedi) * 10  # far more bytes than the deadline lets through
    attackers = [asyncio.create_task(trickle(fedi.port, b"", head, limit + 2))
                 for _ in range(SOCKETS)]
    await asyncio.sleep(0.5)
    await assert_served_meanwhile(fedi)
    outcomes = await asyncio.gather(*attackers)
    held = [o for o in outcomes if o.closed_after is None or o.closed_after > limit]
    assert not held, f"{len(held)} of {SOCKETS} trickling connections were kept open"
    answered = [o.answer for o in outcomes if o.answer]
    assert answered and all(a.startswith(b"HTTP/1.1 408") for a in answered), answered[:3]
    assert b"request headers not received within" in answered[0]
    assert "Traceback" not in fedi.log()


async def test_idle_connections_are_closed(fedi: FediInstance) -> None:
    limit = HEADER_TIMEOUT + SLACK
    idle = await asyncio.gather(*(trickle(fedi.port, b"", b"", limit + 2)
                                  for _ in range(SOCKETS)))
    assert all(o.closed_after is not None and o.closed_after <= limit for o in idle), idle

    # After a complete request, a kept-alive connection that stays idle is closed too.
    get = f"GET /.well-known/nodeinfo HTTP/1.1\r\nHost: {fedi.domain}\r\n\r\n".encode()
    kept = await trickle(fedi.port, get, b"", KEEPALIVE_TIMEOUT + SLACK + 2)
    assert kept.answer.startswith(b"HTTP/1.1 200")
    assert kept.closed_after is not None and kept.closed_after <= KEEPALIVE_TIMEOUT + SLACK


async def test_trickled_bodies_are_cut_off_with_408(fedi: FediInstance) -> None:
    limit = BODY_TIMEOUT + SLACK
    body = b'{"type": "Follow", "padding": "' + b"x" * 400 + b'"}'
    attackers = [
        asyncio.create_task(trickle(fedi.port, request_head(fedi, len(body)), body, limit + 2))
        for _ in range(SOCKETS)
    ]
    await asyncio.sleep(0.5)
    await assert_served_meanwhile(fedi)
    outcomes = await asyncio.gather(*attackers)
    held = [o for o in outcomes if o.closed_after is None or o.closed_after > limit]
    assert not held, f"{len(held)} of {SOCKETS} trickling bodies were kept open"
    assert all(o.answer.startswith(b"HTTP/1.1 408") for o in outcomes), outcomes[:3]
    assert b"request body not received within" in outcomes[0].answer
    [(stored,)] = await fedi.query("SELECT count(*) FROM inbox_items")
    assert stored == 0
    await asyncio.sleep(0.5)  # the app's side of each cut-off request has ended
    log = fedi.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-4000:]


async def test_deadlines_hold_in_every_server_process(tmp_path: Path, database_url: str) -> None:
    """`fedi serve --workers 2`: each process builds its server from the same settings."""
    instance = FediInstance("slow2", database_url, tmp_path)
    instance.start(["--workers", "2"],
                   env={"FEDI_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT)})
    try:
        limit = HEADER_TIMEOUT + SLACK
        idle = await asyncio.gather(*(trickle(instance.port, b"", request_head(instance) * 10,
                                              limit + 2) for _ in range(SOCKETS)))
        assert all(o.closed_after is not None and o.closed_after <= limit for o in idle), idle
        await assert_served_meanwhile(instance)
    finally:
        instance.stop()
