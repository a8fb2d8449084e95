"""The admin's reports, delivery queue and federation mode pages act through the same calls
as `fedi admin report-resolve`, `fedi admin queue --retry` and `fedi admin mode|allow`,
audited under the admin; what cannot be done says why and changes nothing."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import select

from fedi.actors.local import create_group, create_user, find_local
from fedi.federation.reporting import report_post
from fedi.groups.membership import join_local_group
from fedi.groups.posting import post_to_group
from fedi.store.models import (
    Delivery,
    DomainAllow,
    Host,
    InstanceSetting,
    OutboundActivity,
    Post,
    Report,
)
from tests.accounts.support import app, browser, token_in
from tests.web.admin_support import act, audited, signed_up_admin


async def resolve(http: httpx.AsyncClient, report_id: int, action: str,
                  note: str) -> httpx.Response:
    """POST the resolve form as the page does (its field is named `action`), with this
    browser's token (taken from /admin: a resolved report has no form left)."""
    page = await http.get("/admin")
    return await http.post(f"/admin/reports/{report_id}/resolve",
                           data={"csrf": token_in(page), "action": action, "note": note})


async def test_an_instance_report_is_resolved_from_the_page(database_url: str) -> None:
    async with app(database_url) as fedi, browser(fedi) as http:
        root = await signed_up_admin(fedi, http)
        services = fedi.services
        async with services.sessionmaker() as session, session.begin():
            owner = await create_user(session, services.urls, "owner")
            troll = await create_user(session, services.urls, "troll")
            group = await create_group(session, services.urls, "g", owner="owner")
            await join_local_group(session, services.urls, group, troll)
            post = (await post_to_group(session, services.urls, troll, group, "spam")).post
            report = await report_post(session, owner, post, "spam")
            report_id, post_id = report.id, post.id
        listed = await http.get("/admin/reports")
        assert listed.status_code == 200 and "spam" in listed.text
        # A note is required: refused, nothing changes.
        bare = await resolve(http, report_id, "remove", "")
        assert bare.status_code == 400 and "note" in bare.text
        async with services.sessionmaker() as session:
            assert (await session.get(Report, report_id)).state == "open"  # type: ignore[union-attr]
        done = await resolve(http, report_id, "remove", "spam, removed")
        assert done.status_code == 200, done.text
        async with services.sessionmaker() as session:
            row = await session.get(Report, report_id)
            shown = await session.get(Post, post_id)
        assert row is not None and row.state == "resolved" and row.resolution == "remove"
        assert shown is not None and shown.held is not None  # no longer shown
        assert [e.who for e in await audited(fedi, "post.remove")] == [root]
        again = await resolve(http, report_id, "none", "twice")
        assert again.status_code == 400 and "already resolved" in again.text


async def test_a_failing_host_is_retried_now_from_the_queue_page(database_url: str) -> None:
    async with app(database_url) as fedi, browser(fedi) as http:
        root = await signed_up_admin(fedi, http)
        services = fedi.services
        later = time.time() + 3600
        async with services.sessionmaker() as session, session.begin():
            sender = await find_local(session, "root")
            assert sender is not None
            activity = OutboundActivity(uri=f"{services.urls.base}/activities/x",
                                        actor_id=sender.id, body="{}")
            session.add(activity)
            await session.flush()
            session.add(Delivery(activity_id=activity.id, inbox_url="https://slow.example/inbox",
                                 host="slow.example", attempts=3, next_attempt_at=later,
                                 last_status=503))
            session.add(Host(host="slow.example", failures=3, down_until=later))
        page = await http.get("/admin/queue")
        assert page.status_code == 200 and "slow.example" in page.text
        done = await act(http, "/admin/queue", "/admin/queue/retry", host="slow.example")
        assert done.status_code == 200, done.text
        async with services.sessionmaker() as session:
            row = (await session.execute(select(Delivery))).scalar_one()
            host = await session.get(Host, "slow.example")
        assert row.next_attempt_at <= time.time() and host is not None
        assert host.failures == 0 and host.down_until == 0.0
        [entry] = await audited(fedi, "delivery.retry")
        assert entry.who == root and entry.target == "slow.example"
        nothing = await act(http, "/admin/queue", "/admin/queue/retry", host="quiet.example")
        assert nothing.status_code == 400 and "nothing to retry" in nothing.text
        assert len(await audited(fedi, "delivery.retry")) == 1


async def test_federation_mode_and_allowlist_from_the_page(database_url: str) -> None:
    async with app(database_url) as fedi, browser(fedi) as http:
        root = await signed_up_admin(fedi, http)
        allowed = await act(http, "/admin/federation", "/admin/federation/allow",
                            domain="Friends.Example")
        assert allowed.status_code == 200
        mode = await act(http, "/admin/federation", "/admin/federation/mode", mode="allowlist")
        assert mode.status_code == 200 and "allowlist" in mode.text
        wrong = await act(http, "/admin/federation", "/admin/federation/mode", mode="open-ish")
        assert wrong.status_code == 400 and "federation mode must be one of" in wrong.text
        async with fedi.services.sessionmaker() as session:
            assert await session.get(DomainAllow, "friends.example") is not None
            setting = (await session.execute(select(InstanceSetting.value).where(
                InstanceSetting.key.like("%mode%")))).scalars().all()
        assert "allowlist" in setting
        removed = await act(http, "/admin/federation", "/admin/federation/disallow",
                            domain="friends.example")
        assert removed.status_code == 200
        async with fedi.services.sessionmaker() as session:
            assert await session.get(DomainAllow, "friends.example") is None
        for action in ("domain_allow.add", "federation.mode", "domain_allow.remove"):
            assert [e.who for e in await audited(fedi, action)] == [root], action
