"""Issue 12 item 2, SECURITY 21: hostile input against a running fedi answers 4xx with a
reason, stores nothing, and leaves no traceback in the server's log.

One `fedi serve` (with its worker) and one signing remote serve the whole module; every case
uses its own activity id, so "nothing stored" is checked per case.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.databases import create_database, drop_database
from tests.support.instance import FediInstance, eventually
from tests.support.remote import FakeRemote

pytestmark = [pytest.mark.federation, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class World:
    fedi: FediInstance
    remote: FakeRemote
    http: httpx.AsyncClient
    log_mark: int = 0

    @property
    def inbox(self) -> str:
        return f"{self.fedi.base_url}/groups/cats/inbox"

    def activity(self, **extra: Any) -> dict[str, Any]:
        alice = self.remote.actors["alice"].uri
        return {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{self.remote.base_url}/activities/{uuid.uuid4().hex}",
            "type": "Follow", "actor": alice, "object": f"{self.fedi.base_url}/groups/cats",
            **extra,
        }

    async def post(self, body: bytes, *, signed: bool = True) -> httpx.Response:
        headers = (
            self.remote.signed(self.remote.actors["alice"], self.inbox, body) if signed
            else {"Content-Type": "application/activity+json"}
        )
        return await self.http.post(self.inbox, content=body, headers=headers)

    async def stored(self) -> int:
        [(count,)] = await self.fedi.query("SELECT count(*) FROM inbox_items")
        return int(count)

    def assert_clean_log(self) -> None:
        """Only this case's part of the log, so one failure does not fail every later case."""
        log = self.fedi.log()[self.log_mark:]
        assert "Traceback" not in log, log[-4000:]
        assert "Exception in ASGI application" not in log, log[-4000:]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir: Path = tmp_path_factory.mktemp("hostile")
    fedi = FediInstance("hostile", await create_database(workdir, "hostile"), workdir)
    remote = FakeRemote()
    remote.add_actor("alice")
    await remote.start()
    try:
        fedi.cli("create-user", "owner")
        fedi.cli("create-group", "cats", "--owner", "owner")
        fedi.start()
        async with httpx.AsyncClient(timeout=30) as http:
            yield World(fedi, remote, http)
    finally:
        fedi.stop()
        await remote.stop()
        await drop_database(fedi.database_url)


@pytest_asyncio.fixture(loop_scope="module")
async def world(running: World) -> World:
    running.log_mark = len(running.fedi.log())
    return running


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _with_raw(world: World, field: bytes) -> bytes:
    """A valid activity with one extra member spliced in as raw bytes."""
    return _json(world.activity())[:-1] + b', "x": ' + field + b"}"


# Each builds a body that a hostile server signs with a valid key.
HOSTILE_BODIES: dict[str, Callable[[World], bytes]] = {
    "nested_10000_levels": lambda w: _with_raw(w, b"[" * 10_000 + b"]" * 10_000),
    "nested_10000_objects": lambda w: _with_raw(w, b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
    # Legal for orjson (< 1024) but deep enough to break code that walks or prints it.
    "nested_1000_levels": lambda w: _with_raw(w, b"[" * 1000 + b"]" * 1000),
    "integer_5000_digits": lambda w: _with_raw(w, b"7" * 5000),
    "integer_300_digits": lambda w: _with_raw(w, b"7" * 300),
    "negative_integer_5000_digits": lambda w: _with_raw(w, b"-" + b"7" * 5000),
    "fraction_5000_digits": lambda w: _with_raw(w, b"0." + b"1" * 5000),
    "exponent_overflow": lambda w: _with_raw(w, b"1e400"),
    "utf16_with_bom": lambda w: json.dumps(w.activity()).encode("utf-16"),
    "utf16_le_without_bom": lambda w: json.dumps(w.activity()).encode("utf-16-le"),
    "utf8_bom": lambda w: b"\xef\xbb\xbf" + _json(w.activity()),
    "lone_surrogate_escape": lambda w: _json(w.activity(summary="\ud800")),
    "lone_low_surrogate_escape": lambda w: _with_raw(w, b'"\\udc00 tail"'),
    "invalid_utf8": lambda w: _with_raw(w, b'"\xff\xfe"'),
    "nul_character": lambda w: _json(w.activity(summary="a\u0000b")),
    "nan_literal": lambda w: _with_raw(w, b"NaN"),
    "not_an_object": lambda w: b"[" + _json(w.activity()) + b"]",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BODIES))
async def test_hostile_signed_body_is_refused_before_storing(world: World, case: str) -> None:
    before = await world.stored()
    response = await world.post(HOSTILE_BODIES[case](world))
    assert response.status_code == 400, (case, response.status_code, response.text[:300])
    assert response.json()["error"], "a refusal says why"
    assert await world.stored() == before
    world.assert_clean_log()


@pytest.mark.parametrize("deep", [b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"}"])
async def test_deep_nesting_without_a_valid_signature_is_a_4xx(world: World, deep: bytes) -> None:
    before = await world.stored()
    body = _with_raw(world, deep)
    # No signature at all, and a well-formed Signature header whose signature is garbage.
    unsigned = await world.post(body, signed=False)
    signed = world.remote.signed(world.remote.actors["alice"], world.inbox, body)
    signed["Signature"] = signed["Signature"].replace('signature="', 'signature="AAAA', 1)
    forged = await world.http.post(world.inbox, content=body, headers=signed)
    for response in (unsigned, forged):
        assert 400 <= response.status_code < 500, response.text[:300]
        assert response.json()["error"]
    assert await world.stored() == before
    world.assert_clean_log()


@pytest.mark.parametrize("created", ["1e400", "9" * 5000, "-1e400", "nan"])
async def test_absurd_signature_timestamps_are_a_401(world: World, created: str) -> None:
    body = _json(world.activity())
    headers = world.remote.signed(world.remote.actors["alice"], world.inbox, body)
    headers["Signature"] = f"created={created}," + headers["Signature"]
    response = await world.http.post(world.inbox, content=body, headers=headers)
    assert response.status_code == 401, response.text[:300]
    assert "timestamp" in response.json()["error"]
    world.assert_clean_log()


async def test_an_accepted_odd_body_is_read_by_the_worker(world: World) -> None:
    """SECURITY 21: what the inbox answers 202 to, the worker can read (same parser)."""
    activity = world.activity(
        summary="emoji \ud83d\ude00, escapes \u00e9 \\ \" / and a\u2028line",
        n=18446744073709551615, f=-1.5e300, nested=[[[[{"a": [1, 2, {"b": None}]}]]]],
    )
    response = await world.post(_json(activity))
    assert response.status_code == 202, response.text[:300]

    async def outcome() -> Any:
        rows = await world.fedi.query(
            "SELECT state, error FROM inbox_items WHERE activity_uri = :u", u=activity["id"])
        return rows[0] if rows and rows[0][0] != "new" else None

    state, error = await eventually(outcome, what="the worker processed the odd body")
    assert state == "done", error
    assert "internal error" not in (error or "")
    world.assert_clean_log()


HUGE = "9" * 23
PATH_CASES = [HUGE, "9" * 5000, str(2**63), "-1", "0", "abc", "²", "١٢", "1e3", "%20", "+1"]


@pytest.mark.parametrize("path", ["contexts", "copies"])
@pytest.mark.parametrize("raw", PATH_CASES)
async def test_integers_in_paths_are_a_404(world: World, path: str, raw: str) -> None:
    for accept in ("text/html", "application/activity+json"):
        response = await world.http.get(
            f"{world.fedi.base_url}/{path}/{raw}", headers={"Accept": accept})
        assert response.status_code == 404, (raw, response.status_code, response.text[:300])
    world.assert_clean_log()


@pytest.mark.parametrize("raw", [HUGE, "9" * 5000, "²", "-3", "x"])
async def test_hostile_page_numbers_answer_a_page(world: World, raw: str) -> None:
    response = await world.http.get(
        f"{world.fedi.base_url}/groups/cats/outbox", params={"page": raw},
        headers={"Accept": "application/activity+json"},
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["type"] == "OrderedCollectionPage"
    world.assert_clean_log()
