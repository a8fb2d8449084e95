"""`fedi admin queue` against a running instance with a failing remote host: it shows the
queue by host with the host's state and last error, and `--retry HOST` sends now what the
backoff and circuit breaker held (issue 11 item 3)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.observe.support import group_of, join, post
from tests.support.instance import FediInstance, eventually
from tests.support.remote import FakeRemote

pytestmark = pytest.mark.federation


@pytest.fixture
async def failing() -> AsyncIterator[FakeRemote]:
    remote = FakeRemote(statuses=[202, 500])  # accepts the Accept, then fails every post
    remote.add_actor("f")
    await remote.start()
    yield remote
    await remote.stop()


async def execute(a: FediInstance, sql: str, **params: object) -> None:
    engine = create_async_engine(a.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


def line_of(output: str, host: str) -> str:
    found = [line for line in output.splitlines() if line.startswith(host + "\t")]
    assert len(found) == 1, output
    return found[0]


async def test_queue_shows_a_failing_host_and_retry_sends_now(
    instances: list[FediInstance], failing: FakeRemote
) -> None:
    a = instances[0]
    group = group_of(a)
    a.start()
    host = f"127.0.0.1:{failing.port}"
    await join(group, failing, failing.actors["f"])
    await eventually(lambda: failing.posts, what="the Accept")
    post_id = post(a, "held back")

    async def tried() -> bool:
        found = await a.query("SELECT attempts, last_status FROM deliveries "
                              "WHERE host = :h AND state = 'pending'", h=host)
        return bool(found) and found[0][0] >= 1 and found[0][1] == 500

    await eventually(tried, what="the post's delivery failed once and waits for its retry")
    # The breaker as it stands after several failures, without waiting for them (minutes).
    later = time.time() + 3600
    await execute(a, "UPDATE hosts SET failures = 7, down_until = :t WHERE host = :h",
                  t=later, h=host)
    await execute(a, "UPDATE deliveries SET next_attempt_at = :t WHERE host = :h "
                  "AND state = 'pending'", t=later, h=host)

    shown = a.cli("admin", "queue").stdout
    assert "deliveries: pending 1 (due now 0, in flight 0)" in shown, shown
    assert "hosts: 1 failing, 1 paused, 0 gone" in shown, shown
    line = line_of(shown, host)
    assert "\tpaused until " in line and "\tpending 1\t" in line and "\tfailures 7\t" in line
    assert "HTTP 500" in line

    failing.statuses = [202]  # the host is back; the queue would wait an hour for it
    before = len(failing.posts)
    retried = a.cli("admin", "queue", "--retry", host)
    assert retried.stdout.strip() == (
        f"retrying {host} now: 1 pending delivery due now, backoff and circuit breaker cleared"
    )
    await eventually(lambda: len(failing.posts) > before, timeout=15,
                     what="the held delivery sent at once")
    assert post_id in failing.posts[-1].body.decode()

    async def delivered() -> bool:
        states = await a.query("SELECT state FROM deliveries WHERE host = :h", h=host)
        return {s for (s,) in states} == {"done"}

    await eventually(delivered, what="every delivery to the host done")
    after = a.cli("admin", "queue").stdout
    assert "deliveries: pending 0" in after and host not in after, after
    audit = a.cli("admin", "audit").stdout
    assert "delivery.retry" in audit and host in audit

    # Nothing to retry is one line that says so, and changes nothing.
    nothing = a.cli("admin", "queue", "--retry", "nowhere.example", check=False)
    assert nothing.returncode == 2
    assert nothing.stderr.strip() == (
        "fedi: error: nowhere.example has no pending deliveries and is not paused or gone; "
        "nothing to retry (see `fedi admin queue`)"
    )
    assert "Traceback" not in a.log()
