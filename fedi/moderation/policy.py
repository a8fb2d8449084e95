"""The domain policy service: what the inbox, delivery and fetch gates ask before any traffic.

`DomainPolicy.refusal(host)` is the `host_policy` callable those gates take: None to allow,
else the reason for refusing. It answers from an in-memory snapshot of domain_blocks,
domain_allows and the federation mode. Every change writes a new version token in the same
transaction (`mark_changed`); a process notices it within `check_interval` seconds (admin
commands run in their own process), or at once after `invalidate()`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi.errors import ValidationError
from fedi.privacy.domains import (
    MODES,
    Decision,
    Mode,
    Rule,
    Severity,
    candidates,
    decide,
    normalise_or_none,
)
from fedi.store.models import DomainAllow, DomainBlock, InstanceSetting

MODE_KEY = "federation_mode"
VERSION_KEY = "domain_policy_version"


def rule_of(block: DomainBlock) -> Rule:
    severity: Severity = block.severity if block.severity in ("suspend", "silence") else "noop"  # type: ignore[assignment]
    return Rule(
        domain=block.domain, severity=severity, reject_media=block.reject_media,
        reject_reports=block.reject_reports, public_comment=block.public_comment,
        expires_at=block.expires_at,
    )


@dataclass(frozen=True)
class Snapshot:
    blocks: dict[str, Rule] = field(default_factory=dict)
    allows: frozenset[str] = frozenset()
    mode: Mode = "blocklist"
    version: str | None = None


async def get_setting(session: AsyncSession, key: str) -> str | None:
    found = await session.get(InstanceSetting, key)
    return found.value if found is not None else None


async def set_setting(session: AsyncSession, key: str, value: str) -> None:
    found = await session.get(InstanceSetting, key)
    if found is None:
        session.add(InstanceSetting(key=key, value=value))
    else:
        found.value = value


async def get_mode(session: AsyncSession) -> Mode:
    value = await get_setting(session, MODE_KEY)
    return "allowlist" if value == "allowlist" else "blocklist"


async def set_mode(session: AsyncSession, mode: str) -> None:
    if mode not in MODES:
        raise ValidationError(f"federation mode must be one of {', '.join(MODES)}, not {mode!r}")
    await set_setting(session, MODE_KEY, mode)
    await mark_changed(session)


async def mark_changed(session: AsyncSession) -> None:
    """Call in every transaction that changes the policy, so other processes reload it."""
    await set_setting(session, VERSION_KEY, uuid.uuid4().hex)


async def load_snapshot(session: AsyncSession) -> Snapshot:
    blocks = {b.domain: rule_of(b) for b in (await session.execute(select(DomainBlock))).scalars()}
    allows = frozenset((await session.execute(select(DomainAllow.domain))).scalars())
    version = await get_setting(session, VERSION_KEY)
    return Snapshot(blocks, allows, await get_mode(session), version)


async def decision_in(
    session: AsyncSession, host: str, now: float, own_domain: str | None = None
) -> Decision:
    """The decision for one host, read in the caller's transaction (no cache): for handlers."""
    domain = normalise_or_none(host)
    if domain is None:
        return Decision("suspend", reason=f"{host[:100]!r} is not a valid domain")
    if own_domain is not None and domain == normalise_or_none(own_domain):
        return Decision("allow")
    keys = candidates(domain)
    blocks = {
        b.domain: rule_of(b)
        for b in (
            await session.execute(select(DomainBlock).where(DomainBlock.domain.in_(keys)))
        ).scalars()
    }
    allows = set(
        (await session.execute(select(DomainAllow.domain).where(DomainAllow.domain.in_(keys))))
        .scalars()
    )
    return decide(domain, blocks, allows, await get_mode(session), now)


class DomainPolicy:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        own_domain: str | None = None,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._own = normalise_or_none(own_domain) if own_domain else None
        self._interval = check_interval
        self._clock = clock
        self._monotonic = monotonic
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Reload on the next question (after a change this process committed)."""
        self._snapshot = None

    async def snapshot(self) -> Snapshot:
        current = self._snapshot
        if current is not None and self._monotonic() - self._checked_at < self._interval:
            return current
        async with self._lock:
            current = self._snapshot
            if current is not None and self._monotonic() - self._checked_at < self._interval:
                return current
            async with self._sessionmaker() as session:
                version = await get_setting(session, VERSION_KEY)
                if current is None or version != current.version:
                    current = await load_snapshot(session)
            self._snapshot = current
            self._checked_at = self._monotonic()
            return current

    async def decision(self, host: str) -> Decision:
        """The decision for a host[:port] as seen on the wire (normalised here)."""
        domain = normalise_or_none(host)
        if domain is None:
            # Never let a host we cannot read slip past a block.
            return Decision("suspend", reason=f"{host[:100]!r} is not a valid domain")
        if domain == self._own:
            return Decision("allow")
        snap = await self.snapshot()
        return decide(domain, snap.blocks, snap.allows, snap.mode, self._clock())

    async def refusal(self, host: str) -> str | None:
        """The host_policy gate: None to allow traffic with `host`, else why it is refused."""
        decision = await self.decision(host)
        return decision.reason if decision.refused else None

    async def is_silenced(self, host: str) -> bool:
        """Content from `host` is kept out of public listings (pages, public collections)."""
        return (await self.decision(host)).kind == "silence"
