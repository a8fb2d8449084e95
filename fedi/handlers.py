"""What an inbox handler gets, and what it may raise. Shared by groups/ and federation/.

Handlers live in the domain packages (groups, moderation) and in federation; the dispatch
table in federation picks one per activity type. They depend on this module, never on
federation itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import IncomingActivity
from fedi.errors import FediError
from fedi.store.models import Actor
from fedi.urls import Urls


class Ignored(FediError):
    """The activity is valid but not for us; it is marked done with this reason."""


class ActorSource(Protocol):
    """Finds actors and objects, fetching from their origin when needed."""

    async def actor(self, session: AsyncSession, uri: str, *, refresh: bool = False) -> Actor: ...

    async def fetch(self, url: str) -> dict[str, Any]: ...

    async def software(self, session: AsyncSession, host: str) -> str | None: ...


@dataclass
class HandlerContext:
    session: AsyncSession
    urls: Urls
    resolver: ActorSource
    # How many remote fetches this activity may still cause (SECURITY 14).
    fetch_budget: int = 20
    # What happened, when it is worth recording on the inbox item (e.g. a refusal).
    outcome: str | None = None

    def spend_fetch(self) -> bool:
        if self.fetch_budget <= 0:
            return False
        self.fetch_budget -= 1
        return True


Handler = Callable[[HandlerContext, IncomingActivity], Awaitable[None]]
