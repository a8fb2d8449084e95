"""Blocklist imports: a dry-run preview, an apply in one transaction, and a one-step undo.

The preview says, per domain, whether the import is new, changes an existing block or leaves
it unchanged, and how many memberships and follows a suspension would sever. Applying writes
the changed and new rows, severs what the new suspensions cover, and records in
blocklist_imports.previous what each touched domain looked like before (null: not blocked),
so `undo_import` puts every one of them back. Severed follows are not restored by an undo.
Imports add and change blocks; they never remove a block that is not in the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.errors import ValidationError
from fedi.moderation import audit
from fedi.moderation.blocklist_csv import CsvBlock
from fedi.moderation.blocks import BLOCK_FIELDS, SAVED_FIELDS, check_not_own, saved
from fedi.moderation.policy import mark_changed, rule_of
from fedi.moderation.severance import Severed, link_counts, sever_many
from fedi.privacy.domains import Rule, find_rule, normalise_or_none
from fedi.store.models import BlocklistImport, DomainBlock, now

Change = Literal["new", "changed", "unchanged"]
# Called as progress(done, total) while an import runs.
Progress = Callable[[int, int], None]
PROGRESS_EVERY = 100


@dataclass(frozen=True)
class PreviewRow:
    line: int
    domain: str
    change: Change
    severity: str
    before: str | None  # the existing block's severity and flags, when there is one
    memberships: int  # accepted memberships a suspension would sever
    follows: int  # other accepted follows it would sever


@dataclass(frozen=True)
class Preview:
    rows: list[PreviewRow]

    def count(self, change: Change) -> int:
        return sum(1 for row in self.rows if row.change == change)

    @property
    def memberships(self) -> int:
        return sum(row.memberships for row in self.rows)

    @property
    def follows(self) -> int:
        return sum(row.follows for row in self.rows)


def _csv_values(row: CsvBlock) -> dict[str, Any]:
    return {name: getattr(row, name) for name in BLOCK_FIELDS}


def _describe(block: DomainBlock) -> str:
    flags = [name for name in ("reject_media", "reject_reports", "obfuscate")
             if getattr(block, name)]
    return " ".join([block.severity, *flags])


def _change(existing: DomainBlock | None, row: CsvBlock) -> Change:
    if existing is None:
        return "new"
    same = all(getattr(existing, name) == value for name, value in _csv_values(row).items())
    return "unchanged" if same else "changed"


async def _existing(session: AsyncSession) -> dict[str, DomainBlock]:
    return {b.domain: b for b in (await session.execute(select(DomainBlock))).scalars()}


def _tick(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
        progress(done, total)


async def preview(
    session: AsyncSession, rows: Sequence[CsvBlock], *, own_domain: str | None = None,
    progress: Progress | None = None,
) -> Preview:
    """What applying `rows` would do; changes nothing."""
    for row in rows:
        try:
            check_not_own(row.domain, own_domain)
        except ValidationError as exc:
            raise ValidationError(f"line {row.line}: {exc.reason}") from None
    existing = await _existing(session)
    moment = now()
    # The rules as they would be after the import: the most specific one decides a host.
    after: dict[str, Rule] = {domain: rule_of(block) for domain, block in existing.items()}
    changes: dict[str, Change] = {}
    for row in rows:
        changes[row.domain] = _change(existing.get(row.domain), row)
        expires = existing[row.domain].expires_at if row.domain in existing else None
        after[row.domain] = Rule(row.domain, row.severity, row.reject_media, row.reject_reports,
                                 row.public_comment, expires)
    severed: dict[str, list[int]] = {row.domain: [0, 0] for row in rows}
    for host, counts in (await link_counts(session)).items():
        domain = normalise_or_none(host)
        rule = find_rule(domain, after, moment) if domain is not None else None
        if rule is not None and rule.severity == "suspend" and rule.domain in severed:
            severed[rule.domain][0] += counts.memberships
            severed[rule.domain][1] += counts.follows
    result: list[PreviewRow] = []
    for done, row in enumerate(rows, start=1):
        before = existing.get(row.domain)
        memberships, follows = severed[row.domain]
        result.append(PreviewRow(
            row.line, row.domain, changes[row.domain], row.severity,
            _describe(before) if before is not None else None, memberships, follows,
        ))
        _tick(progress, done, len(rows))
    return Preview(result)


@dataclass(frozen=True)
class Applied:
    record: BlocklistImport
    preview: Preview
    severed: Severed


async def apply_import(
    session: AsyncSession, rows: Sequence[CsvBlock], *, who: str, source: str | None = None,
    own_domain: str | None = None, progress: Progress | None = None,
) -> Applied:
    """Apply new and changed rows in the caller's transaction (one transaction for all)."""
    planned = await preview(session, rows, own_domain=own_domain)
    existing = await _existing(session)
    moment = now()
    record = BlocklistImport(source=source, previous="{}", applied_at=moment)
    session.add(record)
    await session.flush()
    previous: dict[str, dict[str, Any] | None] = {}
    suspensions: set[str] = set()
    for done, (row, plan) in enumerate(zip(rows, planned.rows, strict=True), start=1):
        _tick(progress, done, len(rows))
        if plan.change == "unchanged":
            continue
        block = existing.get(row.domain)
        previous[row.domain] = saved(block) if block is not None else None
        if block is None:
            block = DomainBlock(domain=row.domain, created_at=moment)
            session.add(block)
        for name, value in _csv_values(row).items():
            setattr(block, name, value)
        block.import_id = record.id
        block.updated_at = moment
        if row.severity == "suspend":
            suspensions.add(row.domain)
    record.previous = json.dumps(previous, sort_keys=True)
    severed = await sever_many(session, suspensions, moment)
    total = Severed()
    for part in severed.values():
        for name, value in asdict(part).items():
            setattr(total, name, getattr(total, name) + value)
    await mark_changed(session)
    await audit.record(
        session, who, "domain_block.import", f"import {record.id}",
        details={
            "source": source, "new": planned.count("new"), "changed": planned.count("changed"),
            "unchanged": planned.count("unchanged"), "domains": sorted(previous),
            "severed": asdict(total),
        },
    )
    return Applied(record, planned, total)


@dataclass(frozen=True)
class Undone:
    record: BlocklistImport
    restored: list[str]
    skipped: list[str]  # changed by hand after the import; left as they are


async def undo_import(session: AsyncSession, *, who: str) -> Undone:
    """Put back every domain the last applied (and not yet undone) import touched."""
    record = (
        await session.execute(
            select(BlocklistImport)
            .where(BlocklistImport.undone_at.is_(None))
            .order_by(BlocklistImport.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if record is None:
        raise ValidationError("there is no applied blocklist import to undo")
    previous: dict[str, dict[str, Any] | None] = json.loads(record.previous)
    restored: list[str] = []
    skipped: list[str] = []
    suspensions: set[str] = set()
    for domain, before in sorted(previous.items()):
        block = await session.get(DomainBlock, domain)
        if (block is not None and block.import_id != record.id) or (
            block is None and before is not None
        ):
            skipped.append(domain)
            continue
        if before is None:
            if block is not None:
                await session.delete(block)
        else:
            if block is None:
                block = DomainBlock(domain=domain)
                session.add(block)
            for name in SAVED_FIELDS:
                setattr(block, name, before[name])
            if before["severity"] == "suspend":
                suspensions.add(domain)
        restored.append(domain)
    moment = now()
    record.undone_at = moment
    await sever_many(session, suspensions, moment)
    await mark_changed(session)
    await audit.record(
        session, who, "domain_block.undo_import", f"import {record.id}",
        details={"restored": restored, "skipped": skipped},
    )
    return Undone(record, restored, skipped)
