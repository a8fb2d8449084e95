"""Wiring: build every long-lived object once, from Settings. Only app.py and cli.py call this."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from fedi.activitypub.client import ClientSettings, FederationClient
from fedi.activitypub.keys import SigningKey
from fedi.actors.local import ensure_instance_actor
from fedi.config import Settings
from fedi.delivery import wakeup
from fedi.delivery.worker import DeliveryWorker
from fedi.federation.admission import HostBuckets, QueueLimits
from fedi.federation.backlog import InboxBacklog
from fedi.federation.dispatch import HANDLERS
from fedi.federation.fetch_auth import FetchVerifier
from fedi.federation.processor import InboxProcessor
from fedi.federation.receive import Receiver
from fedi.federation.resolve import ActorResolver
from fedi.live.hub import Hub
from fedi.live.listener import PgListener
from fedi.live.source import attach
from fedi.moderation.policy import DomainPolicy
from fedi.store.db import make_engine, make_sessionmaker
from fedi.urls import Urls
from fedi.worker_loop import chores_loop, heartbeat_loop, poll_loop


@dataclass
class Services:
    settings: Settings
    urls: Urls
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    client: FederationClient
    resolver: ActorResolver
    receiver: Receiver
    processor: InboxProcessor
    delivery: DeliveryWorker
    fetch_verifier: FetchVerifier
    domain_policy: DomainPolicy
    live: Hub  # this process's live-update subscribers
    live_listener: PgListener | None = None  # PostgreSQL: set while the app runs
    inbox_wake: asyncio.Event = field(default_factory=asyncio.Event)
    delivery_wake: asyncio.Event = field(default_factory=asyncio.Event)
    instance_key: SigningKey | None = None

    def signing_key(self) -> SigningKey:
        if self.instance_key is None:
            raise RuntimeError("Services.start() was not awaited")
        return self.instance_key

    async def start(self) -> None:
        """Create the instance actor on first run and load its key."""
        async with self.sessionmaker() as session, session.begin():
            actor = await ensure_instance_actor(session, self.urls)
            if not (actor.key_id and actor.private_key_pem):
                raise RuntimeError("the instance actor has no key; the database is damaged")
            self.instance_key = SigningKey(actor.key_id, actor.private_key_pem)

    async def run_workers(self, stop: asyncio.Event) -> None:
        """The inbox processor and the delivery worker, until stop is set."""
        async def process_inbox() -> int:
            handled = await self.processor.run_once(self.settings.inbox_batch)
            if handled:
                self.delivery_wake.set()
            return handled

        # Deliveries committed by other processes (fedi post, other servers) wake this worker
        # at once instead of at its next poll: PostgreSQL's NOTIFY, SQLite's datagram.
        listen = wakeup.listen_sqlite if self.settings.is_sqlite else wakeup.listen
        await asyncio.gather(
            listen(self.settings.database_url, self.delivery_wake.set, stop),
            poll_loop(process_inbox, stop, self.inbox_wake),
            self.delivery.run(stop, self.delivery_wake),
            heartbeat_loop(self.sessionmaker, stop),
            chores_loop(self.sessionmaker, self.urls, stop),
        )

    async def close(self) -> None:
        await self.receiver.close()
        await self.client.close()
        await self.engine.dispose()


def build_services(settings: Settings) -> Services:
    urls = Urls(settings.base_url)
    engine = make_engine(settings)
    sessionmaker = make_sessionmaker(engine)
    live = Hub(settings.live_max_streams)
    attach(sessionmaker, live)  # SQLite: its commits publish here (PostgreSQL: NOTIFY)
    # Domain blocks and allowlist: asked by the inbox, delivery and every outbound request.
    domain_policy = DomainPolicy(sessionmaker, own_domain=settings.domain)
    client = FederationClient(
        ClientSettings(
            allow_private_addresses=settings.allow_private_addresses,
            user_agent=f"fedi/0.1 (+{settings.base_url})",
            per_host_connections=settings.delivery_per_host,
            total_connections=max(settings.delivery_concurrency, 16),
        ),
        host_policy=domain_policy.refusal,
    )
    holder: list[Services] = []

    def instance_key() -> SigningKey:
        return holder[0].signing_key()

    # Plain-http NodeInfo only where private addresses are allowed (development and tests).
    resolver = ActorResolver(
        sessionmaker, client, urls, instance_key, allow_http=settings.allow_private_addresses,
        host_policy=domain_policy.refusal,
    )
    inbox_wake = asyncio.Event()
    receiver = Receiver(
        sessionmaker, resolver, settings.domain, host_policy=domain_policy.refusal,
        on_stored=inbox_wake.set,
        backlog=InboxBacklog(
            sessionmaker, QueueLimits(settings.inbox_max_queue, settings.inbox_max_age_seconds)
        ),
        buckets=HostBuckets(settings.inbox_host_rate, settings.inbox_host_burst),
    )
    processor = InboxProcessor(
        sessionmaker, resolver, urls, HANDLERS, host_policy=domain_policy.refusal
    )
    delivery = DeliveryWorker(
        sessionmaker, client, concurrency=settings.delivery_concurrency,
        per_host=settings.delivery_per_host, lease_seconds=settings.delivery_lease_seconds,
        host_policy=domain_policy.refusal,
    )
    fetch_verifier = FetchVerifier(resolver, settings.domain, receiver.host_policy)
    services = Services(
        settings, urls, engine, sessionmaker, client, resolver, receiver, processor, delivery,
        fetch_verifier, domain_policy, live, inbox_wake=inbox_wake,
    )
    holder.append(services)
    # Deliveries committed in this process wake its worker at once.
    wakeup.attach(sessionmaker, lambda: services.delivery_wake.set())
    return services
