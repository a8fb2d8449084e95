"""Whole servers kept out of one group (a group's own domain blocks)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.privacy.domains import covers
from fedi.store.memo import remembered
from fedi.store.models import Actor, GroupDomainBlock


async def domain_blocked(session: AsyncSession, group: Actor, host: str) -> bool:
    async def load() -> tuple[str, ...]:
        return tuple((await session.execute(
            select(GroupDomainBlock.domain).where(GroupDomainBlock.group_id == group.id)
        )).scalars())

    blocked = await remembered(session, ("domain_blocks", group.id), _TABLES, load)
    return any(covers(domain, host) for domain in blocked)


_TABLES = frozenset({"group_domain_blocks"})
