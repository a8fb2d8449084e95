"""The audit log is append-only: entries can be added and read, never changed or removed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from fedi.actors.local import find_local
from fedi.moderation import audit
from fedi.store.models import AuditEntry
from tests.support.app import InProcess


def test_the_module_offers_no_way_to_change_history() -> None:
    public = {name for name in vars(audit) if not name.startswith("_")}
    assert not {n for n in public if any(w in n for w in ("update", "delete", "edit", "remove"))}


async def test_entries_cannot_be_changed_or_removed(fedi: InProcess) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        entry = await audit.record(session, "admin (cli)", "domain_block.add", "x.example",
                                   reason="spam", details={"severity": "suspend"})
    async with fedi.services.sessionmaker() as session:
        found = await session.get(AuditEntry, entry.id)
        assert found is not None
        found.reason = "rewritten"
        with pytest.raises(audit.AppendOnly):
            await session.commit()
    async with fedi.services.sessionmaker() as session:
        found = await session.get(AuditEntry, entry.id)
        assert found is not None
        await session.delete(found)
        with pytest.raises(audit.AppendOnly):
            await session.commit()
    async with fedi.services.sessionmaker() as session:
        kept = (await session.execute(select(AuditEntry))).scalar_one()
    assert (kept.who, kept.action, kept.target, kept.reason) == (
        "admin (cli)", "domain_block.add", "x.example", "spam")


async def test_moderators_read_their_group_and_admins_read_all(fedi: InProcess) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        await audit.record(session, "a", "group.ban", "x", group_id=None)
        cats = await find_local(session, "cats")
        assert cats is not None
        await audit.record(session, "b", "group.ban", "y", group_id=cats.id)
        group_id = cats.id
    async with fedi.services.sessionmaker() as session:
        assert [e.who for e in await audit.for_group(session, group_id)] == ["b"]
        assert [e.who for e in await audit.for_admins(session)] == ["b", "a"]
