"""/healthz and /readyz of a running `fedi serve` (issue 11 item 3): readiness names the
check that failed (database, migrations, worker) and answers without authentication."""

from __future__ import annotations

import signal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from fedi.store.db import make_sessionmaker
from fedi.web import health
from tests.support.instance import FediInstance, eventually
from tests.support.ports import port_of, reserve_port

pytestmark = pytest.mark.federation


async def ready(a: FediInstance) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{a.base_url}/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_ready_with_a_worker_and_not_without_one(instances: list[FediInstance]) -> None:
    a = instances[0]
    a.start(["--no-worker"])
    async with httpx.AsyncClient() as http:
        live = await http.get(f"{a.base_url}/healthz")
    assert live.status_code == 200 and live.json() == {"status": "ok"}

    # The web process alone: the database and schema are fine, but nothing would process
    # the inbox or deliver.
    status, body = await ready(a)
    assert status == 503, body
    assert body["status"] == "not ready" and body["failed"] == ["worker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"].startswith("ok")
    assert "fedi worker" in body["checks"]["worker"]

    worker = a.spawn("worker")
    status, body = await eventually(lambda: _when(ready(a), 200), what="ready with a worker")
    assert body == {"status": "ready", "failed": [], "checks": body["checks"]}
    assert body["checks"]["worker"].startswith("ok")

    # A worker that stops cleanly says so: readiness follows at once.
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    status, body = await ready(a)
    assert status == 503 and body["failed"] == ["worker"]
    assert "Traceback" not in a.log()


async def test_not_ready_when_the_schema_is_behind(instances: list[FediInstance]) -> None:
    a = instances[0]
    a.start()
    await eventually(lambda: _when(ready(a), 200), what="ready")
    head = (await a.query("SELECT version_num FROM alembic_version"))[0][0]
    await _execute(a, "UPDATE alembic_version SET version_num = '0001'")
    status, body = await ready(a)
    assert status == 503 and body["failed"] == ["migrations"], body
    assert "0001" in body["checks"]["migrations"] and head in body["checks"]["migrations"]
    assert "fedi migrate" in body["checks"]["migrations"]
    await _execute(a, f"UPDATE alembic_version SET version_num = '{head}'")
    assert (await ready(a))[0] == 200


async def test_healthz_needs_no_database_and_readyz_says_it_is_unreachable() -> None:
    # A database nobody listens on: the port is held, not listening.
    held = reserve_port()
    engine = create_async_engine(f"postgresql+asyncpg://fedi@127.0.0.1:{port_of(held)}/fedi")
    app = Starlette(routes=health.routes)
    app.state.services = SimpleNamespace(sessionmaker=make_sessionmaker(engine))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://fedi.test") as http:
            live = await http.get("/healthz")
            readiness = await http.get("/readyz")
    finally:
        await engine.dispose()
        held.close()
    assert live.status_code == 200
    assert readiness.status_code == 503
    body = readiness.json()
    assert body["failed"] == ["database"]
    assert body["checks"]["database"].startswith("unreachable: ")


async def _when(probe: Any, status: int) -> Any:
    found = await probe
    return found if found[0] == status else None


async def _execute(a: FediInstance, sql: str) -> None:
    engine = create_async_engine(a.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()
