"""Helpers of the observability tests: scrape /metrics with prometheus-client's own parser,
and a group with remote members on loopback fake servers."""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.instance import FediInstance
from tests.support.remote import FakeRemote, RemoteActor

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(
    base_url: str, headers: Mapping[str, str] | None = None
) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base_url}/metrics", headers=dict(headers or {}))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 if absent: a counter not yet touched)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def group_of(a: FediInstance) -> str:
    a.cli("create-user", "alice")
    a.cli("create-group", "cats", "--owner", "alice")
    return f"{a.base_url}/groups/cats"


def post(a: FediInstance, text: str) -> str:
    return str(a.cli("post", "--as", "alice", "--group", "cats", text).stdout.strip())


async def join(group: str, remote: FakeRemote, actor: RemoteActor) -> None:
    body = json.dumps({"id": f"{actor.uri}/follows/1", "type": "Follow", "actor": actor.uri,
                       "object": group}).encode()
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{group}/inbox", content=body, headers=remote.signed(actor, f"{group}/inbox", body)
        )
    assert response.status_code == 202, response.text
