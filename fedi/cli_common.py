"""What every `fedi` command shares: services built, migrated and started, then closed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fedi import runtime
from fedi.config import Settings
from fedi.services import Services, build_services
from fedi.store.migrate import migrate


def with_services(
    settings: Settings, work: Callable[[Services], Awaitable[int]], *, long_running: bool = False
) -> int:
    """Run `work` with ready services (database migrated, instance keys made) and close them."""
    async def runner() -> int:
        services = build_services(settings)
        try:
            await migrate(services.engine)
            await services.start()
            return await work(services)
        finally:
            await services.close()

    return runtime.run(runner()) if long_running else asyncio.run(runner())
