"""create_app(settings): the Starlette application and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from fedi.config import Settings
from fedi.services import build_services
from fedi.web import collections, federation, invites, pages, wellknown


def create_app(settings: Settings, *, run_worker: bool = True) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = build_services(settings)
        await services.start()
        app.state.services = services
        stop = asyncio.Event()
        worker = asyncio.create_task(services.run_workers(stop)) if run_worker else None
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                await worker
            await services.close()

    return Starlette(
        routes=[
            *wellknown.routes, *pages.routes, *collections.routes, *invites.routes,
            *federation.routes,
        ],
        lifespan=lifespan,
    )
