"""The per-host limit through the worker, against a loopback inbox: it grows while the host
answers fast, is cut by 429 and 5xx, and Retry-After holds every row for the host."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fedi.activitypub.client import as_url
from fedi.activitypub.poster import host_key
from fedi.delivery.worker import DeliveryWorker
from tests.delivery.loopback import Fedi, LoopbackInbox, start_fedi


class Monotonic:
    """The worker's in-process clock: real time, plus what the test skips ahead."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[Fedi]:
    world = await start_fedi(database_url)
    yield world
    await world.services.close()


@pytest.fixture
async def inbox() -> AsyncIterator[LoopbackInbox]:
    server = LoopbackInbox(delay=0.1)
    await server.start()
    yield server
    await server.stop()


async def queue(fedi: Fedi, inbox: LoopbackInbox, n: int) -> None:
    """n unrelated activities (no order between them), each to its own inbox on the host."""
    for i in range(n):
        await fedi.send({"id": f"http://fedi.test/activities/{i}", "type": "Create",
                         "actor": fedi.group.uri,
                         "object": {"id": f"http://fedi.test/posts/{i}", "type": "Note"}},
                        f"{inbox.base}/users/u{i}/inbox")


def watch_cut_and_sends(fedi: Fedi, worker: DeliveryWorker) -> tuple[list[float], dict[str, float]]:
    """When the worker first took in a failing answer, and when it started each request (by
    the inbox's path), both on the monotonic clock the loopback inbox stamps arrivals with."""
    cut_at: list[float] = []
    sent_at: dict[str, float] = {}
    answered = worker.host_limits.answered
    post_activity = fedi.services.client.post_activity

    def watched_answered(host: str, **kwargs: Any) -> None:
        status = kwargs["status"]
        if not cut_at and (status is None or status >= 500 or status == 429):
            cut_at.append(time.monotonic())
        answered(host, **kwargs)

    async def watched_post(url: str, *args: Any, **kwargs: Any) -> Any:
        sent_at[as_url(url).path] = time.monotonic()
        return await post_activity(url, *args, **kwargs)

    worker.host_limits.answered = watched_answered  # type: ignore[method-assign]
    fedi.services.client.post_activity = watched_post  # type: ignore[method-assign]
    return cut_at, sent_at


async def test_the_limit_grows_while_the_host_answers_fast(
    fedi: Fedi, inbox: LoopbackInbox
) -> None:
    await queue(fedi, inbox, 120)
    worker = fedi.worker(per_host=32, per_host_start=4)
    await worker.run_once()
    assert len(inbox.arrivals) == 120
    assert inbox.arrivals[0].in_flight <= 4
    assert inbox.peak_in_flight > 8  # grew past its start, within its ceiling
    assert inbox.peak_in_flight <= 32
    assert worker.host_limits.peak == 32


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_429_and_5xx_cut_the_limit(
    fedi: Fedi, inbox: LoopbackInbox, status: int
) -> None:
    inbox.script = lambda index: (202, {}) if index < 40 else (status, {})
    await queue(fedi, inbox, 80)
    worker = fedi.worker(per_host=32, per_host_start=8)
    cut_at, sent_at = watch_cut_and_sends(fedi, worker)
    await worker.run_once()
    host = host_key(as_url(inbox.base))
    assert worker.host_limits.peak >= 16  # the fast answers grew it
    assert any(a.index >= 40 for a in inbox.arrivals), "no request was answered with a failure"
    # Then each round of failures halved it: a request the worker started after it had taken
    # in the first failing answer found at most half the peak in flight. (Timed on the
    # worker's side: on a loaded machine the worker learns of an answer well after the
    # server gave it, and what it sent meanwhile was within the old limit.)
    assert cut_at
    late = [a.in_flight for a in inbox.arrivals if sent_at[a.path] > cut_at[0]]
    assert late and max(late) <= worker.host_limits.peak // 2
    assert worker.host_limits.limit(host, time.monotonic()) < worker.host_limits.peak // 2


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_holds_every_row_for_the_host(
    fedi: Fedi, inbox: LoopbackInbox, status: int
) -> None:
    inbox.delay = 0.0
    inbox.script = lambda index: (status, {"Retry-After": "120"}) if index == 0 else (202, {})
    await queue(fedi, inbox, 6)
    monotonic = Monotonic()
    worker = fedi.worker(per_host=8, per_host_start=1, monotonic=monotonic)
    await worker.run_once()
    # The first answer asked for two minutes: the five other rows were not sent.
    assert len(inbox.arrivals) == 1
    states = [state for _, state in await fedi.states()]
    assert states == ["pending"] * 6
    monotonic.skipped += 60
    fedi.clock.now += 60
    await worker.run_once()
    assert len(inbox.arrivals) == 1  # still within the two minutes
    monotonic.skipped += 61
    fedi.clock.now += 61
    await worker.run_once()
    assert len(inbox.arrivals) == 7  # the first row again, and the five held back
    assert [state for _, state in await fedi.states()] == ["done"] * 6
