"""SECURITY 14 (fetch storms), SECURITY 18 (remote HTML) and issue 12 item 7's benchmark,
each tried against a running fedi with a signed member on a loopback server."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC
from tests.support.instance import FediInstance, eventually
from tests.support.remote import FakeRemote, RemoteActor

pytestmark = pytest.mark.federation
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def member(instances: list[FediInstance]) -> AsyncIterator[
        tuple[FediInstance, FakeRemote, RemoteActor]]:
    v = instances[0]
    v.cli("create-user", "owner")
    v.cli("create-group", "g", "--owner", "owner")
    remote = FakeRemote()
    await remote.start()
    rem = remote.add_actor("rem")
    v.start()
    await send(v, remote, rem, {"type": "Follow", "object": f"{v.base_url}/groups/g"})
    yield v, remote, rem
    await remote.stop()


async def send(v: FediInstance, remote: FakeRemote, actor: RemoteActor,
               activity: dict[str, Any]) -> str:
    activity = {"@context": AS_CONTEXT, "id": f"{actor.uri}/activities/{uuid.uuid4()}",
                "actor": actor.uri, **activity}
    inbox = f"{v.base_url}/groups/g/inbox"
    body = json.dumps(activity).encode()
    async with httpx.AsyncClient() as http:
        answer = await http.post(inbox, content=body, headers=remote.signed(actor, inbox, body))
    assert answer.status_code == 202, answer.text

    async def handled() -> bool:
        rows = await v.query("SELECT state FROM inbox_items WHERE activity_uri = :u",
                             u=activity["id"])
        return bool(rows) and rows[0][0] != "new"

    await eventually(handled, what="handled")
    return str(activity["id"])


async def test_one_activity_causes_at_most_twenty_fetches(
    member: tuple[FediInstance, FakeRemote, RemoteActor],
) -> None:
    """A post naming 60 unknown people (each a fetch) and replying to a post nobody has
    (a chain to walk) costs at most the budget of 20 fetches, and is still handled."""
    v, remote, rem = member
    crowd = [remote.add_actor(f"p{i}", key_index=1).uri for i in range(60)]
    note_id = f"{remote.base_url}/objects/{uuid.uuid4()}"
    note = {"id": note_id, "type": "Note", "attributedTo": rem.uri, "content": "<p>hi</p>",
            "to": crowd, "inReplyTo": f"{remote.base_url}/objects/unknown-parent",
            "tag": [{"type": "Mention", "href": f"{v.base_url}/groups/g"}]}
    before = sum(remote.fetches.values())
    await send(v, remote, rem, {"type": "Create", "object": note, "to": crowd})
    caused = sum(remote.fetches.values()) - before
    assert 0 < caused <= 20, remote.fetches
    assert remote.fetches["objects/unknown-parent"] == 0  # no walk up a reply chain
    audience = await v.query(
        "SELECT count(*) FROM post_audience pa JOIN posts p ON p.id = pa.post_id "
        "WHERE p.uri = :u", u=note_id)
    assert 0 < audience[0][0] <= 20


HOSTILE_HTML = (
    '<p onclick="steal()" style="position:fixed">Hello <b>there</b>'
    "<script>alert(1)</script><img src=x onerror=alert(2)>"
    '<iframe src="http://127.0.0.1:1/"></iframe><svg onload=alert(3)></svg>'
    '<a href="http://example.org/ok" onmouseover="alert(4)" style="color:red">ok</a>'
    '<form action="http://127.0.0.1:1/"><input name=x></form><style>p{}</style></p>'
)


async def test_remote_html_is_cut_to_the_allowlist_before_it_is_stored_or_shown(
    member: tuple[FediInstance, FakeRemote, RemoteActor],
) -> None:
    v, remote, rem = member
    note_id = f"{remote.base_url}/objects/{uuid.uuid4()}"
    note = {"id": note_id, "type": "Note", "attributedTo": rem.uri, "content": HOSTILE_HTML,
            "to": [PUBLIC, f"{v.base_url}/groups/g"], "name": "A <script>title</script>"}
    await send(v, remote, rem, {"type": "Create", "object": note, "to": note["to"]})
    [(post_id, content, document)] = await v.query(
        "SELECT id, content, document FROM posts WHERE uri = :u", u=note_id)
    async with httpx.AsyncClient() as http:
        page = (await http.get(f"{v.base_url}/groups/g",
                               headers={"Accept": "text/html"})).text
        thread = (await http.get(f"{v.base_url}/remote/posts/{post_id}",
                                 headers={"Accept": "text/html"})).text
    assert "Hello <b>there</b>" in content and "http://example.org/ok" in content
    # The thread is listed by its title (its markup dropped), and shown here with its text.
    assert f'<a href="/remote/posts/{post_id}">A</a>' in page
    assert "Hello <b>there</b>" in thread
    stored = json.loads(document)["content"]
    for shown in (content, stored, page, thread):
        lowered = shown.lower()
        for needle in ("<script>alert", "onclick", "onerror", "onload", "onmouseover",
                       "<iframe", "<svg", "<form", "<input", "steal()", "position:fixed",
                       "color:red", "<style>p"):
            assert needle not in lowered, (needle, shown[:400])


def test_the_flood_benchmark_prints_the_queue_peak_and_the_refused_count() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.flood", "--requests", "120", "--concurrency", "20",
         "--host-rate", "10", "--host-burst", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "inbox queue peak" in out and "refused answers" in out
    refused = int(out.split("flooding host: refused answers", 1)[1].split()[0])
    assert refused > 0
    assert "every 202 processed             OK" in out
