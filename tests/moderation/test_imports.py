"""Blocklist import: the preview's counts, apply + undo, and what a suspension severs."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.actors.local import create_user, find_local
from fedi.moderation.blocklist_csv import parse_blocklist
from fedi.moderation.blocks import SAVED_FIELDS
from fedi.moderation.imports import apply_import, preview, undo_import
from fedi.store.models import (
    Actor,
    AuditEntry,
    BlocklistImport,
    Delivery,
    DomainBlock,
    Follow,
    InboxItem,
    OutboundActivity,
    Post,
)
from tests.support.app import InProcess

HEADER = "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n"


async def remote_actor(session: AsyncSession, host: str, name: str, kind: str = "Person") -> Actor:
    uri = f"https://{host}/{'groups' if kind == 'Group' else 'users'}/{name}"
    actor = Actor(uri=uri, type=kind, local=False, username=name, domain=host,
                  inbox=f"{uri}/inbox", shared_inbox=f"https://{host}/inbox")
    session.add(actor)
    await session.flush()
    return actor


async def link(session: AsyncSession, follower: Actor, target: Actor, state: str = "accepted"):
    session.add(Follow(follower_id=follower.id, target_id=target.id, state=state))
    await session.flush()


async def prepare(fedi: InProcess) -> dict[str, Actor]:
    """Memberships and follows with a few domains."""
    async with fedi.services.sessionmaker() as session, session.begin():
        urls = fedi.services.urls
        alice = await create_user(session, urls, "alice")
        cats = await find_local(session, "cats")
        assert cats is not None
        spam1 = await remote_actor(session, "spam.example", "s1")
        spam2 = await remote_actor(session, "sub.spam.example", "s2")
        spam3 = await remote_actor(session, "spam.example", "s3")
        spam_port = await remote_actor(session, "spam.example:8443", "s4")
        loud = await remote_actor(session, "loud.example", "l1")
        forum = await remote_actor(session, "groups.example", "forum", kind="Group")
        await link(session, spam1, cats)  # membership
        await link(session, spam2, cats)  # membership (subdomain)
        await link(session, spam_port, cats)  # membership (another port)
        await link(session, spam3, cats, "pending")  # not a membership yet: not counted
        await link(session, alice, spam1)  # follow, local → remote
        await link(session, spam3, alice)  # follow, remote → local
        await link(session, loud, cats)  # silenced: nothing severed
        await link(session, alice, forum)  # alice is a member of a remote group
        return {"alice": alice, "cats": cats, "spam1": spam1, "spam2": spam2, "loud": loud,
                "forum": forum}


CSV = HEADER + (
    "spam.example,suspend,false,false,Spam,false\n"
    "loud.example,silence,false,false,,false\n"
    "groups.example,suspend,true,true,,false\n"
    "quiet.example,suspend,false,false,,false\n"
)


async def test_preview_counts_what_each_suspension_would_sever(fedi: InProcess) -> None:
    await prepare(fedi)
    async with fedi.services.sessionmaker() as session:
        planned = await preview(session, parse_blocklist(CSV))
    rows = {(r.domain, r.change, r.memberships, r.follows) for r in planned.rows}
    assert rows == {
        ("spam.example", "new", 3, 2),
        ("loud.example", "new", 0, 0),
        ("groups.example", "new", 1, 0),
        ("quiet.example", "new", 0, 0),
    }
    assert (planned.memberships, planned.follows) == (4, 2)
    # A preview changes nothing.
    async with fedi.services.sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(DomainBlock))).scalar() == 0
        assert (await session.execute(select(func.count()).select_from(Follow))).scalar() == 8


async def test_preview_respects_a_more_specific_exception(fedi: InProcess) -> None:
    await prepare(fedi)
    async with fedi.services.sessionmaker() as session, session.begin():
        session.add(DomainBlock(domain="sub.spam.example", severity="noop"))
    async with fedi.services.sessionmaker() as session:
        planned = await preview(session, parse_blocklist(CSV))
    spam = next(r for r in planned.rows if r.domain == "spam.example")
    assert (spam.memberships, spam.follows) == (2, 2)


async def _blocks(fedi: InProcess) -> dict[str, dict[str, Any]]:
    async with fedi.services.sessionmaker() as session:
        return {
            b.domain: {name: getattr(b, name) for name in SAVED_FIELDS}
            for b in (await session.execute(select(DomainBlock))).scalars()
        }


async def test_apply_then_undo_restores_the_previous_state_exactly(fedi: InProcess) -> None:
    actors = await prepare(fedi)
    async with fedi.services.sessionmaker() as session, session.begin():
        session.add(DomainBlock(
            domain="loud.example", severity="suspend", reject_media=True, public_comment="old",
            private_comment="keep this", expires_at=4_000_000_000.0, created_at=1.0,
            updated_at=2.0,
        ))
        session.add(DomainBlock(domain="groups.example", severity="suspend", reject_media=True,
                                reject_reports=True, created_at=3.0, updated_at=4.0))
    before = await _blocks(fedi)

    async with fedi.services.sessionmaker() as session, session.begin():
        applied = await apply_import(session, parse_blocklist(CSV), who="test", source="x.csv")
    planned = applied.preview
    assert [(r.domain, r.change) for r in planned.rows] == [
        ("spam.example", "new"), ("loud.example", "changed"), ("groups.example", "unchanged"),
        ("quiet.example", "new"),
    ]
    after = await _blocks(fedi)
    assert after["loud.example"]["severity"] == "silence"
    assert after["loud.example"]["private_comment"] == "keep this"  # not in the CSV: kept
    assert after["spam.example"]["import_id"] == applied.record.id
    assert after["groups.example"] == before["groups.example"]  # unchanged: untouched
    # spam.example's memberships and follows were severed (alice's remote group was not:
    # groups.example was suspended before the import).
    assert (applied.severed.memberships, applied.severed.follows) == (3, 2)
    async with fedi.services.sessionmaker() as session:
        remaining = (await session.execute(select(Follow.follower_id, Follow.target_id))).all()
    assert (actors["spam1"].id, actors["cats"].id) not in remaining
    assert (actors["loud"].id, actors["cats"].id) in remaining

    async with fedi.services.sessionmaker() as session, session.begin():
        undone = await undo_import(session, who="test")
    assert undone.record.id == applied.record.id
    assert sorted(undone.restored) == ["loud.example", "quiet.example", "spam.example"]
    assert await _blocks(fedi) == before
    async with fedi.services.sessionmaker() as session:
        record = await session.get(BlocklistImport, applied.record.id)
        assert record is not None and record.undone_at is not None
        assert json.loads(record.previous)["spam.example"] is None
        actions = list((await session.execute(select(AuditEntry.action))).scalars())
    assert actions == ["domain_block.import", "domain_block.undo_import"]


async def test_undo_leaves_blocks_changed_by_hand_after_the_import(fedi: InProcess) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        await apply_import(session, parse_blocklist("a.example\nb.example\n"), who="test")
    async with fedi.services.sessionmaker() as session, session.begin():
        changed = await session.get(DomainBlock, "b.example")
        assert changed is not None
        changed.severity, changed.import_id = "silence", None
    async with fedi.services.sessionmaker() as session, session.begin():
        undone = await undo_import(session, who="test")
    assert (undone.restored, undone.skipped) == (["a.example"], ["b.example"])
    assert set(await _blocks(fedi)) == {"b.example"}


async def test_suspension_severs_follows_queued_work_and_posts(fedi: InProcess) -> None:
    actors = await prepare(fedi)
    async with fedi.services.sessionmaker() as session, session.begin():
        spam1 = actors["spam1"]
        session.add(Post(uri="https://spam.example/posts/1", author_id=spam1.id,
                         group_id=actors["cats"].id, content="buy now", document="{}"))
        session.add(InboxItem(activity_uri="https://spam.example/a/1", actor_uri=spam1.uri,
                              body="{}", state="new"))
        record = OutboundActivity(uri="https://fedi.test/activities/x",
                                  actor_id=actors["cats"].id, body="{}")
        session.add(record)
        await session.flush()
        for inbox, host in (("https://spam.example/inbox", "spam.example"),
                            ("https://loud.example/inbox", "loud.example")):
            session.add(Delivery(activity_id=record.id, inbox_url=inbox, host=host))
    async with fedi.services.sessionmaker() as session, session.begin():
        await apply_import(session, parse_blocklist("spam.example\n"), who="test")
    async with fedi.services.sessionmaker() as session:
        post = (await session.execute(select(Post))).scalar_one()
        assert post.deleted_at is not None and post.held == "domain suspended"
        item = (await session.execute(select(InboxItem))).scalar_one()
        assert item.state == "done" and item.error and "suspended" in item.error
        states = dict((await session.execute(select(Delivery.host, Delivery.state))).all())
        assert states == {"spam.example": "dropped", "loud.example": "pending"}
