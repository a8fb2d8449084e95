"""Reports: a remote Flag reaches the queue, reject_reports is honoured, forwarding sends a
Flag signed by the instance actor, and resolving is audited."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from fedi.activitypub.httpsig import parse_signature, verify_request
from fedi.federation.reporting import report_post
from fedi.moderation.reports import forward_report, list_reports, resolve
from fedi.store.models import Actor, AuditEntry, InboxItem, Post, Report
from tests.moderation.conftest import block
from tests.support.app import BASE_URL, InProcess
from tests.support.remote import FakeRemote

GROUP = f"{BASE_URL}/groups/cats"
INBOX = f"{GROUP}/inbox"


async def send(fedi: InProcess, remote: FakeRemote, signer: str, activity: dict[str, Any],
               url: str = INBOX) -> int:
    raw = json.dumps(activity).encode()
    response = await fedi.http.post(url, content=raw,
                                    headers=remote.signed(remote.actors[signer], url, raw))
    return response.status_code


async def member_posts(fedi: InProcess, remote: FakeRemote) -> str:
    """Remote alice joins cats and posts in it; returns the post's id."""
    alice = remote.actors["alice"].uri
    assert await send(fedi, remote, "alice", {
        "id": f"{remote.base_url}/activities/follow", "type": "Follow", "actor": alice,
        "object": GROUP}) == 202
    note = {"id": f"{remote.base_url}/notes/1", "type": "Note", "attributedTo": alice,
            "to": [GROUP], "content": "<p>Buy cheap watches</p>"}
    assert await send(fedi, remote, "alice", {
        "id": f"{remote.base_url}/activities/create-1", "type": "Create", "actor": alice,
        "to": [GROUP], "object": note}) == 202
    await fedi.services.processor.run_once()
    return note["id"]


def flag(remote: FakeRemote, objects: list[str], suffix: str = "1") -> dict[str, Any]:
    return {"id": f"{remote.base_url}/activities/flag-{suffix}", "type": "Flag",
            "actor": remote.actors["mod"].uri, "object": objects, "content": "Spam bot"}


async def reports(fedi: InProcess) -> list[Report]:
    async with fedi.services.sessionmaker() as session:
        return list((await session.execute(select(Report))).scalars())


async def test_a_remote_flag_reaches_the_group_moderators_and_admins(
    fedi: InProcess, remote: FakeRemote
) -> None:
    post_uri = await member_posts(fedi, remote)
    alice = remote.actors["alice"].uri
    assert await send(fedi, remote, "mod", flag(remote, [alice, post_uri]),
                      url=f"{BASE_URL}/inbox") == 202
    await fedi.services.processor.run_once()
    [report] = await reports(fedi)
    async with fedi.services.sessionmaker() as session:
        target = await session.get(Actor, report.target_id)
        reporter = await session.get(Actor, report.reporter_id)
        group = await session.get(Actor, report.group_id)
        assert target is not None and target.uri == alice
        assert reporter is not None and reporter.uri == remote.actors["mod"].uri
        assert group is not None and group.uri == GROUP
        assert json.loads(report.post_uris) == [post_uri]
        assert report.comment == "Spam bot" and report.state == "open"
        # In the queue of the group's moderators and of the admins.
        assert [v.report.id for v in await list_reports(session, group_id=group.id)] == [report.id]
        assert [v.report.id for v in await list_reports(session)] == [report.id]

    # The same Flag again files nothing new.
    assert await send(fedi, remote, "mod", flag(remote, [alice, post_uri])) == 202
    await fedi.services.processor.run_once()
    assert len(await reports(fedi)) == 1


async def test_a_flag_about_a_post_alone_names_its_author(
    fedi: InProcess, remote: FakeRemote
) -> None:
    post_uri = await member_posts(fedi, remote)
    assert await send(fedi, remote, "mod", flag(remote, [post_uri])) == 202
    await fedi.services.processor.run_once()
    [report] = await reports(fedi)
    assert json.loads(report.post_uris) == [post_uri]


async def test_flags_from_a_domain_with_reject_reports_are_dropped(
    fedi: InProcess, remote: FakeRemote
) -> None:
    post_uri = await member_posts(fedi, remote)
    await block(fedi, f"127.0.0.1:{remote.port}", "noop", reject_reports=True)
    assert await send(fedi, remote, "mod", flag(remote, [post_uri])) == 202
    await fedi.services.processor.run_once()
    assert await reports(fedi) == []
    async with fedi.services.sessionmaker() as session:
        item = (
            await session.execute(select(InboxItem).where(InboxItem.activity_uri.like("%flag%")))
        ).scalar_one()
    assert item.state == "done" and item.error and "reports" in item.error


async def test_a_forwarded_report_is_a_flag_signed_by_the_instance_actor(
    fedi: InProcess, remote: FakeRemote
) -> None:
    post_uri = await member_posts(fedi, remote)
    sent_before = len(remote.posts)
    async with fedi.services.sessionmaker() as session, session.begin():
        owner = (await session.execute(
            select(Actor).where(Actor.uri == f"{BASE_URL}/users/owner"))).scalar_one()
        post = (await session.execute(select(Post).where(Post.uri == post_uri))).scalar_one()
        report = await report_post(session, owner, post, "Spam in cats")
        inbox = await forward_report(session, fedi.services.urls, report, who="test")
    assert inbox == remote.shared_inbox
    await fedi.services.delivery.run_once()
    [sent] = [p for p in remote.posts[sent_before:] if p.json.get("type") == "Flag"]
    activity = sent.json
    instance = f"{BASE_URL}/actor"
    assert activity["actor"] == instance
    assert activity["object"] == [remote.actors["alice"].uri, post_uri]
    assert activity["content"] == "Spam in cats"
    assert "owner" not in json.dumps(activity)  # the reporter stays anonymous
    # The signature is the instance actor's, and it verifies.
    params = parse_signature(sent.headers)
    assert params.key_id == f"{instance}#main-key"
    async with fedi.services.sessionmaker() as session:
        actor = (await session.execute(select(Actor).where(Actor.uri == instance))).scalar_one()
        forwarded = await session.get(Report, report.id)
        assert forwarded is not None and forwarded.forwarded_at is not None
    assert actor.public_key_pem is not None
    verify_request(params, "POST", f"{remote.base_url}{sent.path}", sent.headers, sent.body,
                   actor.public_key_pem)


async def test_resolving_records_the_action_in_the_audit_log(
    fedi: InProcess, remote: FakeRemote
) -> None:
    post_uri = await member_posts(fedi, remote)
    assert await send(fedi, remote, "mod", flag(remote, [post_uri])) == 202
    await fedi.services.processor.run_once()
    [report] = await reports(fedi)
    async with fedi.services.sessionmaker() as session, session.begin():
        found = await session.get(Report, report.id)
        assert found is not None
        await resolve(session, found, action="none", note="not spam, a joke", who="owner")
    async with fedi.services.sessionmaker() as session:
        entry = (await session.execute(select(AuditEntry))).scalar_one()
        resolved = await session.get(Report, report.id)
    assert (entry.who, entry.action, entry.target) == ("owner", "report.resolve",
                                                       f"report {report.id}")
    assert entry.reason == "not spam, a joke" and entry.group_id == report.group_id
    assert json.loads(entry.details)["action"] == "none"
    assert resolved is not None and resolved.state == "resolved"
    assert resolved.resolution_note == "not spam, a joke"
