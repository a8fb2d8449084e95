"""What an inbox handler gets: the session of its transaction and the services it may call."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.federation.resolve import ActorResolver
from fedi.urls import Urls


@dataclass
class HandlerContext:
    session: AsyncSession
    urls: Urls
    resolver: ActorResolver
    # How many remote fetches this activity has caused so far (SECURITY 14).
    fetch_budget: int = 20

    def spend_fetch(self) -> bool:
        if self.fetch_budget <= 0:
            return False
        self.fetch_budget -= 1
        return True
