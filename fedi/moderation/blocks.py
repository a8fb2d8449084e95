"""Instance domain blocks and the allowlist: add, change, remove, list. Each change is audited
and marks the policy changed (see policy.mark_changed) in the caller's transaction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.errors import ValidationError
from fedi.moderation import audit
from fedi.moderation.policy import get_mode, mark_changed, set_mode
from fedi.moderation.severance import Severed, sever
from fedi.privacy.domains import MODES, SEVERITIES, covers, normalise_domain
from fedi.store.models import DomainAllow, DomainBlock, now

# The fields of a block that an admin sets and that an import compares.
BLOCK_FIELDS = ("severity", "reject_media", "reject_reports", "public_comment", "obfuscate")
# Everything needed to put a block back exactly as it was (blocklist_imports.previous).
SAVED_FIELDS = (*BLOCK_FIELDS, "private_comment", "expires_at", "import_id", "created_at",
                "updated_at")


@dataclass(frozen=True)
class BlockSettings:
    severity: str
    reject_media: bool = False
    reject_reports: bool = False
    public_comment: str | None = None
    private_comment: str | None = None
    obfuscate: bool = False
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValidationError(
                f"severity must be one of {', '.join(SEVERITIES)}, not {self.severity!r}"
            )


@dataclass(frozen=True)
class BlockResult:
    domain: str
    created: bool
    severed: Severed | None


def saved(block: DomainBlock) -> dict[str, Any]:
    return {name: getattr(block, name) for name in SAVED_FIELDS}


def check_not_own(domain: str, own_domain: str | None) -> None:
    if own_domain is not None and covers(domain, normalise_domain(own_domain)):
        raise ValidationError(f"{domain} would cover this instance's own domain {own_domain}")


async def list_blocks(session: AsyncSession) -> list[DomainBlock]:
    return list((await session.execute(select(DomainBlock).order_by(DomainBlock.domain))).scalars())


async def put_block(
    session: AsyncSession, domain: str, settings: BlockSettings
) -> tuple[DomainBlock, bool, Severed | None]:
    """Create or change the block of a normalised domain; a suspension severs at once."""
    moment = now()
    block = await session.get(DomainBlock, domain)
    created = block is None
    if block is None:
        block = DomainBlock(domain=domain, created_at=moment)
        session.add(block)
    block.severity = settings.severity
    block.reject_media = settings.reject_media
    block.reject_reports = settings.reject_reports
    block.public_comment = settings.public_comment
    block.obfuscate = settings.obfuscate
    block.private_comment = settings.private_comment
    block.expires_at = settings.expires_at
    block.import_id = None  # set by hand now: an undo of an earlier import leaves it alone
    block.updated_at = moment
    await session.flush()
    severed = None
    if settings.severity == "suspend":
        # Also when it was suspended already: harmless, and catches anything that slipped in.
        severed = await sever(session, domain, moment)
    await mark_changed(session)
    return block, created, severed


async def add_block(
    session: AsyncSession, raw: str, settings: BlockSettings, *, who: str,
    own_domain: str | None = None,
) -> BlockResult:
    domain = normalise_domain(raw)
    check_not_own(domain, own_domain)
    _, created, severed = await put_block(session, domain, settings)
    details: dict[str, Any] = {
        "severity": settings.severity, "reject_media": settings.reject_media,
        "reject_reports": settings.reject_reports, "public_comment": settings.public_comment,
        "expires_at": settings.expires_at, "created": created,
    }
    if severed is not None:
        details["severed"] = asdict(severed)
    await audit.record(
        session, who, "domain_block.add", domain,
        reason=settings.private_comment or settings.public_comment, details=details,
    )
    return BlockResult(domain, created, severed)


async def remove_block(session: AsyncSession, raw: str, *, who: str) -> DomainBlock:
    domain = normalise_domain(raw)
    block = await session.get(DomainBlock, domain)
    if block is None:
        raise ValidationError(f"{domain} is not blocked")
    before = saved(block)
    await session.delete(block)
    await mark_changed(session)
    await audit.record(session, who, "domain_block.remove", domain, details={"before": before})
    return block


async def set_federation_mode(session: AsyncSession, mode: str, *, who: str) -> int:
    """Switch blocklist/allowlist mode; returns how many domains are on the allowlist."""
    if mode not in MODES:
        raise ValidationError(f"federation mode must be one of {', '.join(MODES)}, not {mode!r}")
    before = await get_mode(session)
    await set_mode(session, mode)
    allowed = len((await session.execute(select(DomainAllow.domain))).all())
    await audit.record(session, who, "federation.mode", mode,
                       details={"before": before, "allowed_domains": allowed})
    return allowed


async def allow(session: AsyncSession, raw: str, *, who: str) -> bool:
    """Put a domain on the allowlist; False if it was there already."""
    domain = normalise_domain(raw)
    created = await session.get(DomainAllow, domain) is None
    if created:
        session.add(DomainAllow(domain=domain, created_at=now()))
        await mark_changed(session)
    await audit.record(session, who, "domain_allow.add", domain, details={"created": created})
    return created


async def disallow(session: AsyncSession, raw: str, *, who: str) -> None:
    domain = normalise_domain(raw)
    found = await session.get(DomainAllow, domain)
    if found is None:
        raise ValidationError(f"{domain} is not on the allowlist")
    await session.delete(found)
    await mark_changed(session)
    await audit.record(session, who, "domain_allow.remove", domain)


async def list_allows(session: AsyncSession) -> list[str]:
    return list(
        (await session.execute(select(DomainAllow.domain).order_by(DomainAllow.domain))).scalars()
    )
