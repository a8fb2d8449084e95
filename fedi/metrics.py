"""Prometheus metrics: the metric objects every layer counts with, and their exposition.

Counters only on hot paths (an `inc()` on a pre-bound child). Queue depths are not gauges
kept by some process: they live in the database, shared by every `fedi serve` and `fedi
worker`, so /metrics reads them when it is scraped (see fedi.web.health).

Labels are closed sets (the `*_REASONS`, `OUTCOMES` and route templates), never free text,
so the number of series stays bounded whatever remote servers send.

Under `fedi serve --workers N` each process counts into files of a directory named by
PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode), and a scrape of any of them
adds up all. prometheus_client reads that variable when it is first imported, so the CLI
sets it (`multiprocess_dir`) before the server processes start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PREFIX = "fedi-metrics-"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# What an inbox POST came to. Every refusal of fedi.federation.receive has one of these.
INBOX_RESULTS = ("accepted", "signature", "parse", "policy", "rate_limited", "overloaded",
                 "too_large")
_INBOX_BY_STATUS = {202: "accepted", 401: "signature", 400: "parse", 403: "policy",
                    429: "rate_limited", 503: "overloaded", 413: "too_large"}
# Why an inbox signature was not accepted, by the stage that refused it.
SIGNATURE_REASONS = (
    "unsigned",  # no Signature / Signature-Input header
    "malformed",  # the signature header cannot be parsed or lacks keyId or value
    "wrong_host",  # the request was addressed to another Host
    "key_host",  # the key is not on the actor's host
    "key_unavailable",  # the key could not be fetched
    "key_owner",  # the key belongs to another actor
    "invalid",  # verification failed (digest, date window, covered headers, signature)
)
# What a delivery attempt came to (fedi.delivery.retry states, in words an admin reads).
DELIVERY_OUTCOMES = ("sent", "retried", "failed", "dropped", "host_gone")
_OUTCOME_OF_STATE = {"done": "sent", "pending": "retried", "failed": "failed",
                     "dropped": "dropped"}

# A `_created` series beside every counter doubles the output and is rarely used.
disable_created_metrics()  # type: ignore[no-untyped-call]

INBOX = Counter("fedi_inbox_requests", "Inbox POSTs by result (accepted or why refused)",
                ["result"])
SIGNATURE_FAILURES = Counter(
    "fedi_signature_failures", "Inbox HTTP signatures not accepted, by reason", ["reason"]
)
DELIVERIES = Counter("fedi_deliveries", "Delivery attempts by outcome", ["outcome"])
HOSTS_MARKED_DEAD = Counter(
    "fedi_delivery_hosts_marked_dead", "Remote hosts marked gone (410 from a shared inbox)"
)
HTTP_LATENCY = Histogram(
    "fedi_http_request_duration_seconds", "HTTP request latency by route template",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_REQUESTS = Counter(
    "fedi_http_requests", "HTTP requests by route template, method and status class",
    ["route", "method", "status"],
)

# Children bound once, so every series exists (at 0) from the start and the inbox path does a
# dict lookup and an inc, nothing more.
_INBOX = {result: INBOX.labels(result) for result in INBOX_RESULTS}
_SIGNATURES = {reason: SIGNATURE_FAILURES.labels(reason) for reason in SIGNATURE_REASONS}
_DELIVERIES = {outcome: DELIVERIES.labels(outcome) for outcome in DELIVERY_OUTCOMES}


def inbox_result(status: int) -> None:
    """Count one inbox answer; the status says which stage decided (receive.py)."""
    child = _INBOX.get(_INBOX_BY_STATUS.get(status, "parse"))
    if child is not None:
        child.inc()


def signature_failure(reason: str) -> None:
    _SIGNATURES[reason].inc()


def delivery_outcome(state: str, count: int = 1) -> None:
    """Count `count` deliveries that ended an attempt in `state` (done, pending, failed,
    dropped) or, as "host_gone", were closed unsent because their host is gone."""
    _DELIVERIES[_OUTCOME_OF_STATE.get(state, state)].inc(count)


def hosts_marked_dead(count: int) -> None:
    HOSTS_MARKED_DEAD.inc(count)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


# Children by label values (a bounded set: route templates, methods, status classes), so a
# request costs two dict lookups instead of two labels() calls with their lock.
_LATENCY: dict[tuple[str, str], Any] = {}
_REQUESTS: dict[tuple[str, str, int], Any] = {}


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    latency = _LATENCY.get((route, method))
    if latency is None:
        latency = _LATENCY[route, method] = HTTP_LATENCY.labels(route, method)
    latency.observe(seconds)
    counted = _REQUESTS.get((route, method, status))
    if counted is None:
        counted = _REQUESTS[route, method, status] = HTTP_REQUESTS.labels(
            route, method, status_class(status))
    counted.inc()


def exposition(extra: CollectorRegistry | None = None) -> bytes:
    """The text format of this process's metrics, or of all processes in multiprocess mode,
    followed by `extra` (figures read at scrape time)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        text = generate_latest(REGISTRY)
    return text + (generate_latest(extra) if extra is not None else b"")


class _Snapshot(Collector):
    def __init__(self, gauges: Mapping[str, tuple[str, float]]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        for name, (documentation, value) in self._gauges.items():
            yield GaugeMetricFamily(name, documentation, value=value)


def snapshot(gauges: Mapping[str, tuple[str, float]]) -> CollectorRegistry:
    """Gauges read at scrape time (name → (help, value)), as a registry to expose."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(gauges))
    return registry


@contextlib.contextmanager
def multiprocess_dir(processes: int) -> Iterator[str | None]:
    """For `fedi serve --workers N` (N > 1): a fresh directory for the processes' metric
    files, set in the environment they inherit and removed on exit. An admin's own
    PROMETHEUS_MULTIPROC_DIR (shared with `fedi worker` processes, say) is used as it is."""
    given = os.environ.get(MULTIPROC_ENV)
    if given or processes <= 1:
        yield given or None
        return
    _sweep(Path(tempfile.gettempdir()))
    directory = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def _sweep(parent: Path) -> None:
    """Remove the directories of `fedi serve` processes that were killed (SIGKILL leaves no
    chance to clean up): fedi-metrics-PID-… whose PID no longer runs."""
    for found in parent.glob(f"{_PREFIX}*-*"):
        pid = found.name.removeprefix(_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(found, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
