"""A loopback inbox for delivery tests: scripted answers, and what it saw (arrivals, in
flight at once, TCP connections), plus a fedi with one group to send from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import select

from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.delivery.enqueue import enqueue
from fedi.delivery.worker import DeliveryWorker
from fedi.services import Services, build_services
from fedi.store.migrate import migrate
from fedi.store.models import Actor, Delivery
from tests.support.ports import port_of, reserve_port

# (index of the POST, from 0) → (status, headers)
Script = Callable[[int], tuple[int, dict[str, str]]]


@dataclass
class Arrival:
    index: int
    path: str
    body: dict[str, Any]
    at: float  # monotonic
    in_flight: int  # requests being answered when this one arrived, itself included
    answered_at: float = 0.0


@dataclass
class LoopbackInbox:
    delay: float = 0.0
    script: Script = lambda index: (202, {})
    arrivals: list[Arrival] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)
    in_flight: int = 0
    peak_in_flight: int = 0

    async def start(self) -> None:
        self._sock = reserve_port()
        app = web.Application()
        app.router.add_post("/{path:.*}", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def stop(self) -> None:
        await self._runner.cleanup()
        self._sock.close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{port_of(self._sock)}"

    async def _post(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.connections.add((peer[0], peer[1]))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        arrival = Arrival(len(self.arrivals), request.path, await request.json(),
                          time.monotonic(), self.in_flight)
        self.arrivals.append(arrival)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            status, headers = self.script(arrival.index)
            return web.Response(status=status, headers=headers, text="")
        finally:
            self.in_flight -= 1
            arrival.answered_at = time.monotonic()


class Clock:
    """The worker's wall clock, movable; a little ahead so rows enqueued now are due."""

    def __init__(self) -> None:
        self.now = time.time() + 5

    def __call__(self) -> float:
        return self.now


@dataclass
class Fedi:
    services: Services
    group: Actor
    clock: Clock = field(default_factory=Clock)

    def worker(self, **kwargs: Any) -> DeliveryWorker:
        return DeliveryWorker(self.services.sessionmaker, self.services.client,
                              clock=self.clock, **kwargs)

    async def send(self, activity: dict[str, Any], *inboxes: str) -> None:
        async with self.services.sessionmaker() as session, session.begin():
            await enqueue(session, self.group, activity, inboxes)

    async def states(self) -> list[tuple[str, str]]:
        """(inbox, state) of every row, in the order they were queued."""
        async with self.services.sessionmaker() as session:
            rows = await session.execute(
                select(Delivery.inbox_url, Delivery.state).order_by(Delivery.id))
            return [(inbox, state) for inbox, state in rows.all()]


async def start_fedi(database_url: str) -> Fedi:
    settings = Settings(base_url="http://fedi.test", database_url=database_url,
                        allow_private_addresses=True)
    services = build_services(settings)
    await migrate(services.engine)
    await services.start()
    async with services.sessionmaker() as session, session.begin():
        await create_user(session, services.urls, "owner")
        group = await create_group(session, services.urls, "cats", owner="owner")
    return Fedi(services, group)
