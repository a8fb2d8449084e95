"""The streaming API across processes: on PostgreSQL a reply stored by the CLI reaches the
WebSocket streams held by every `fedi serve` process of the instance, as an update and as
the notification it made, through NOTIFY.

Real processes on one PostgreSQL database: two `fedi serve --no-worker` (each on its own
port, so the test knows which process holds which socket, as `--workers N` processes share
one), and the CLI, which holds no stream and no listener of its own.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect

from fedi.accounts import oauth
from fedi.accounts import scopes as scope_rules
from fedi.actors.local import find_local
from fedi.groups.membership import join_local_group
from fedi.store.db import make_sessionmaker
from fedi.urls import Urls
from tests.support.databases import using_postgres
from tests.support.instance import FediInstance, eventually
from tests.web.test_live_processes import _answers, _end, _listeners, second_server

pytestmark = [
    pytest.mark.federation,
    pytest.mark.skipif(not using_postgres(), reason=(
        "several processes share events through PostgreSQL's LISTEN/NOTIFY; on SQLite fedi "
        "serve is one process, tested in process by tests/api/test_streaming.py")),
]
WAIT = 20.0


async def join_and_token(fedi: FediInstance, person: str, group: str) -> str:
    """The person joins the group (as the web's join button does) and gets a read token."""
    engine = create_async_engine(fedi.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            member, cats = await find_local(session, person), await find_local(session, group)
            assert member is not None and cats is not None
            await join_local_group(session, Urls(fedi.base_url), cats, member)
            app, _ = await oauth.register_app(session, name="streams", redirect_uris=[oauth.OOB],
                                              scopes=scope_rules.parse("read"))
            issued = await oauth.issue_token(session, app, member.id, scope_rules.parse("read"))
        return issued.access_token
    finally:
        await engine.dispose()


async def frames(connection: Any, count: int) -> list[dict[str, Any]]:
    found = []
    for _ in range(count):
        raw = await asyncio.wait_for(connection.recv(), WAIT)
        frame = json.loads(raw)
        frame["payload"] = json.loads(frame["payload"])
        found.append(frame)
    return found


async def test_a_reply_from_the_cli_reaches_websockets_on_every_serve_process(
    instances: list[FediInstance],
) -> None:
    fedi = instances[0]
    fedi.cli("create-user", "olga")
    fedi.cli("create-user", "mia")
    fedi.cli("create-group", "cats", "--owner", "olga")
    mia = await join_and_token(fedi, "mia", "cats")
    thread_uri = fedi.cli("post", "--as", "mia", "--group", "cats", "--title", "Mine",
                          "Hello").stdout.strip()

    fedi.start(["--no-worker"])
    second, second_url, listener = second_server(fedi)
    async with AsyncExitStack() as stack:
        stack.callback(listener.close)
        stack.callback(_end, second)
        await eventually(lambda: _answers(second_url), timeout=60, what="the second server")
        await eventually(lambda: _listeners(fedi, 2), what="two LISTEN connections")
        sockets = [
            await stack.enter_async_context(connect(
                base.replace("http://", "ws://") + "/api/v1/streaming?stream=user",
                additional_headers={"Authorization": f"Bearer {mia}"}, open_timeout=WAIT))
            for base in (fedi.base_url, second_url)
        ]

        reply_uri = fedi.cli("post", "--as", "olga", "--group", "cats", "--reply-to",
                             thread_uri, "From the shell").stdout.strip()
        [(reply,)] = await fedi.query("SELECT id FROM posts WHERE uri = :u", u=reply_uri)
        for connection in sockets:
            got = {f["event"]: f for f in await frames(connection, 2)}
            assert got.keys() == {"update", "notification"}
            assert got["update"]["payload"]["id"] == str(reply)
            assert got["update"]["payload"]["content"].count("From the shell") == 1
            assert got["notification"]["payload"]["type"] == "mention"
            assert got["notification"]["payload"]["status"]["id"] == str(reply)
