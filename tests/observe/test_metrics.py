"""/metrics of a running `fedi serve`, read with prometheus-client's own text parser: the
counters move as activities arrive and deliveries happen, the queue gauges follow the
database, and under `--workers 2` the processes' figures add up (issue 11 item 3)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from fedi.web.health import may_scrape
from tests.observe.support import Samples, group_of, join, parse, post, scrape, value
from tests.support.instance import FediInstance, eventually
from tests.support.remote import FakeRemote

pytestmark = pytest.mark.federation

GROUP_INBOX = "/groups/{name:str}/inbox"


@pytest.fixture
async def remotes() -> AsyncIterator[list[FakeRemote]]:
    started: list[FakeRemote] = []
    yield started
    for remote in started:
        await remote.stop()


async def remote(remotes: list[FakeRemote], name: str, key_index: int,
                 statuses: list[int]) -> FakeRemote:
    found = FakeRemote(statuses=statuses)
    found.add_actor(name, key_index=key_index)
    await found.start()
    remotes.append(found)
    return found


def moved(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def deliveries(samples: Samples, outcome: str) -> float:
    return value(samples, "fedi_deliveries_total", outcome=outcome)


async def test_counters_move_as_activities_arrive_and_deliveries_happen(
    instances: list[FediInstance], remotes: list[FakeRemote]
) -> None:
    a = instances[0]
    group = group_of(a)
    # Each remote host may send one activity a second, two at once (then 429).
    a.start(env={"FEDI_INBOX_HOST_RATE": "1", "FEDI_INBOX_HOST_BURST": "2"})
    healthy = await remote(remotes, "h", 0, [202])
    failing = await remote(remotes, "f", 1, [202, 500])  # accepts the Accept, then fails
    gone = await remote(remotes, "g", 2, [202, 410])  # then its shared inbox says 410 Gone
    start = await scrape(a.base_url)

    for server, name in ((healthy, "h"), (failing, "f"), (gone, "g")):
        await join(group, server, server.actors[name])
    joined = await eventually(
        lambda: _scraped_when(a, lambda s: deliveries(s, "sent") - deliveries(start, "sent") >= 3),
        what="the three Accepts counted as sent",
    )
    assert moved(joined, start, "fedi_inbox_requests_total", result="accepted") == 3
    hist = "fedi_http_request_duration_seconds_count"
    assert moved(joined, start, hist, route=GROUP_INBOX, method="POST") == 3

    post(a, "hello")
    after = await eventually(
        lambda: _scraped_when(a, lambda s: (
            deliveries(s, "sent") - deliveries(joined, "sent") >= 1
            and deliveries(s, "retried") > deliveries(joined, "retried")
            and value(s, "fedi_delivery_hosts_marked_dead_total") >= 1
            # A scrape reads the queues before it reads the counters: polled until both agree.
            and value(s, "fedi_delivery_hosts_gone") >= 1
        )),
        what="the post sent to the healthy host, retried at the failing one, and the gone "
        "host marked dead",
    )
    assert value(after, "fedi_delivery_hosts_marked_dead_total") == 1
    # The gauges read the database at the scrape: the failing host's row waits for its retry,
    # the gone host is counted as such.
    assert value(after, "fedi_delivery_hosts_gone") == 1
    assert value(after, "fedi_delivery_queue_pending") >= 1
    assert value(after, "fedi_delivery_hosts_failing") >= 1
    assert value(after, "fedi_database_up") == 1
    assert ("fedi_inbox_queue_depth", frozenset()) in after
    assert ("fedi_inbox_queue_oldest_age_seconds", frozenset()) in after
    assert ("fedi_delivery_queue_oldest_due_age_seconds", frozenset()) in after

    # Refused at the inbox: counted by the stage that refused, never by the free-text reason.
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(f"{a.base_url}/inbox", content=b"{}",
                                   headers={"Content-Type": "application/activity+json"})
        forged = await http.post(f"{a.base_url}/inbox", content=b"{}", headers={
            "Content-Type": "application/activity+json", "Signature": 'keyId="x",junk'})
        huge = await http.post(f"{a.base_url}/inbox", content=b" " * 1_100_000,
                               headers={"Content-Type": "application/activity+json"})
        member = healthy.actors["h"]
        statuses = []
        for n in range(2, 6):
            body = json.dumps({"id": f"{member.uri}/likes/{n}", "type": "Like",
                               "actor": member.uri, "object": f"{group}/nothing"}).encode()
            answer = await http.post(f"{a.base_url}/inbox", content=body,
                                     headers=healthy.signed(member, f"{a.base_url}/inbox", body))
            statuses.append(answer.status_code)
    assert (unsigned.status_code, forged.status_code, huge.status_code) == (401, 401, 413)
    assert 429 in statuses, statuses
    refused = await scrape(a.base_url)
    assert moved(refused, after, "fedi_inbox_requests_total", result="too_large") == 1
    assert moved(refused, after, "fedi_inbox_requests_total",
                 result="rate_limited") == statuses.count(429)
    assert moved(refused, after, "fedi_inbox_requests_total",
                 result="accepted") == statuses.count(202)
    assert moved(refused, after, "fedi_inbox_requests_total", result="signature") == 2
    assert moved(refused, after, "fedi_signature_failures_total", reason="unsigned") == 1
    assert moved(refused, after, "fedi_signature_failures_total", reason="malformed") == 1
    assert moved(refused, after, hist, route="/inbox", method="POST") == 3 + len(statuses)
    assert moved(refused, after, "fedi_http_requests_total", route="/inbox", method="POST",
                 status="4xx") == 3 + statuses.count(429)
    # Bounded labels: routes are templates, never raw paths or free-text reasons.
    routes = {dict(labels).get("route") for (name, labels) in refused if name == hist}
    assert "/groups/cats/inbox" not in routes and GROUP_INBOX in routes
    assert "Traceback" not in a.log()


async def _scraped_when(a: FediInstance, ready: object) -> Samples | None:
    samples = await scrape(a.base_url)
    return samples if callable(ready) and ready(samples) else None


TOKEN = "metrics-Token-4f9a8b7c6d5e"


async def test_metrics_are_served_to_loopback_clients_or_with_the_token(
    instances: list[FediInstance],
) -> None:
    guarded, plain = instances[0], instances[1]
    guarded.start(env={"FEDI_METRICS_TOKEN": TOKEN})
    plain.start()
    proxied = {"X-Forwarded-For": "203.0.113.7"}
    async with httpx.AsyncClient() as http:
        for a in (guarded, plain):
            direct = await http.get(f"{a.base_url}/metrics")
            assert direct.status_code == 200
            parse(direct.text)
            through_proxy = await http.get(f"{a.base_url}/metrics", headers=proxied)
            assert through_proxy.status_code == 403
            assert "FEDI_METRICS_TOKEN" in through_proxy.json()["error"]
            wrong = await http.get(f"{a.base_url}/metrics", headers={
                **proxied, "Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 403
        with_token = await http.get(f"{guarded.base_url}/metrics", headers={
            **proxied, "Authorization": f"Bearer {TOKEN}"})
        assert with_token.status_code == 200
        assert value(parse(with_token.text), "fedi_database_up") == 1
        # Without a configured token, no token opens it.
        assert (await http.get(f"{plain.base_url}/metrics", headers={
            **proxied, "Authorization": f"Bearer {TOKEN}"})).status_code == 403
    assert TOKEN not in guarded.log()


def test_who_may_scrape() -> None:
    assert may_scrape("127.0.0.1", {}, None)
    assert may_scrape("::1", {}, None)
    assert not may_scrape("203.0.113.7", {}, None)
    assert not may_scrape(None, {}, None)
    assert not may_scrape("127.0.0.1", {"forwarded": "for=203.0.113.7"}, None)
    assert not may_scrape("127.0.0.1", {"x-real-ip": "203.0.113.7"}, None)
    assert may_scrape("203.0.113.7", {"authorization": "Bearer s3cret"}, "s3cret")
    assert may_scrape("203.0.113.7", {"authorization": "bearer s3cret"}, "s3cret")
    assert not may_scrape("203.0.113.7", {"authorization": "Bearer s3cre"}, "s3cret")
    assert not may_scrape("203.0.113.7", {"authorization": "Basic s3cret"}, "s3cret")
    assert not may_scrape("203.0.113.7", {"authorization": "Bearer "}, "s3cret")


def _healthz_per_process(directory: Path) -> dict[str, float]:
    """What each server process counted for GET /healthz, read from its own file."""
    counted: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):
            for sample in family.samples:
                if (sample.name == "fedi_http_requests_total"
                        and sample.labels.get("route") == "/healthz"):
                    counted[path.stem] = counted.get(path.stem, 0.0) + sample.value
    return counted


async def test_with_two_server_processes_the_metrics_add_up(
    instances: list[FediInstance], tmp_path: Path
) -> None:
    a = instances[0]
    temp = tmp_path / "tmp"
    temp.mkdir()
    # What a SIGKILLed server leaves behind; the next start removes it.
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()
    stale = temp / f"fedi-metrics-{dead.pid}-x1y2z3"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"")
    a.start(["--workers", "2"], env={"TMPDIR": str(temp)})
    assert not stale.exists(), "a killed server's metrics directory was left behind"
    found = list(temp.glob("fedi-metrics-*"))
    assert len(found) == 1, "fedi serve --workers 2 made no metrics directory of its own"
    directory = found[0]
    await eventually(lambda: len(list(directory.glob("counter_*.db"))) >= 2,
                     what="both server processes counting")

    total = 0
    for _ in range(20):
        # Concurrent requests on fresh connections reach both processes.
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as http:
            answers = await asyncio.gather(*(http.get(f"{a.base_url}/healthz")
                                             for _ in range(10)))
        assert {r.status_code for r in answers} == {200}
        total += len(answers)
        if len([n for n in _healthz_per_process(directory).values() if n]) >= 2:
            break
    per_process = _healthz_per_process(directory)
    assert len([n for n in per_process.values() if n]) >= 2, per_process
    assert sum(per_process.values()) == total

    # Whichever process answers a scrape, it reports the sum of both.
    for _ in range(6):
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as http:
            response = await http.get(f"{a.base_url}/metrics")
        assert response.status_code == 200
        samples = parse(response.text)
        assert value(samples, "fedi_http_requests_total", route="/healthz", method="GET",
                     status="2xx") == total

    a.stop()
    assert not directory.exists(), "the metrics directory outlived the server"
