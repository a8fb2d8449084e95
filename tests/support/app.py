"""fedi in process: the real app on a real database, driven through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from fedi.app import create_app
from fedi.config import Settings
from fedi.services import Services, build_services
from fedi.store.migrate import migrate

BASE_URL = "http://fedi.test"


@dataclass
class InProcess:
    http: httpx.AsyncClient
    services: Services
    settings: Settings


async def migrated(settings: Settings) -> None:
    services = build_services(settings)
    try:
        await migrate(services.engine)
    finally:
        await services.close()


@asynccontextmanager
async def running_app(database_url: str, **overrides: object) -> AsyncIterator[InProcess]:
    settings = Settings(
        base_url=BASE_URL, database_url=database_url, allow_private_addresses=True,
        **overrides,  # type: ignore[arg-type]
    )
    await migrated(settings)
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield InProcess(http, app.state.services, settings)
