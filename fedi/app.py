"""create_app(settings): the Starlette application and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from fedi.api import routes as api_routes
from fedi.api.cors import ApiCors
from fedi.config import Settings, load_settings
from fedi.runtime import settle_gc
from fedi.services import build_services
from fedi.web import (
    about,
    account_pages,
    admin_routes,
    app_grants,
    collections,
    compose,
    errors,
    federation,
    feeds,
    health,
    invites,
    live,
    membership_pages,
    mod_pages,
    notification_pages,
    pages,
    remote_follow,
    remote_mod_pages,
    wellknown,
)
from fedi.web.accesslog import AccessLog
from fedi.web.connections import DRAINING
from fedi.web.headers import SecurityHeaders


def create_app(
    settings: Settings, *, run_worker: bool = True, tune_gc: bool = False
) -> Starlette:
    """tune_gc: tune the garbage collector for a long-running server (fedi serve)."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        services = build_services(settings)
        await services.start()
        app.state.services = services
        stop = asyncio.Event()
        worker = asyncio.create_task(services.run_workers(stop)) if run_worker else None
        listening = live.start_listening(services, stop)
        if tune_gc:
            settle_gc()
        try:
            # uvicorn calls DRAINING as it starts to stop: live streams end, connections close.
            yield {DRAINING: services.live.close}
        finally:
            services.live.close()
            stop.set()
            if listening is not None:
                await listening
            if worker is not None:
                await worker
            await services.close()

    return Starlette(
        routes=[
            *wellknown.routes, *pages.routes, *collections.routes, *invites.routes,
            *federation.routes, *health.routes, *account_pages.routes, *about.routes,
            *feeds.routes, *remote_follow.routes, *app_grants.routes,
            *notification_pages.routes, *live.routes,
            *compose.routes, *membership_pages.routes, *mod_pages.routes,
            *remote_mod_pages.routes, *admin_routes.routes,
            # After the site's own /static routes: the API's default images.
            *api_routes.routes,
        ],
        lifespan=lifespan,
        # The site's error pages for browsers, JSON for machines; a 500 logs a request id.
        exception_handlers=errors.exception_handlers,
        # Outermost: the access log and latency see every response as it leaves.
        middleware=[Middleware(AccessLog, log_requests=settings.access_log),
                    Middleware(ApiCors), Middleware(SecurityHeaders)],
    )


RUN_WORKER_ENV = "FEDI_SERVE_RUN_WORKER"


def app_from_environment() -> Starlette:
    """The app of one of several `fedi serve --workers N` processes (uvicorn's factory)."""
    return create_app(
        load_settings(), run_worker=os.environ.get(RUN_WORKER_ENV, "1") == "1", tune_gc=True
    )
