"""The moderators' dashboard and actions from the browser: each action changes what the CLI
changes and is audited under the person who acted; `fedi mod --as` names the moderator too;
every moderation route refuses members, other groups' moderators and visitors."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from starlette.routing import Route

from fedi.cli import main
from fedi.federation.reporting import report_post
from fedi.groups import moderation, modlog
from fedi.groups.membership import join_local_group
from fedi.groups.posting import post_to_group
from fedi.moderation import audit
from fedi.store.models import AuditEntry, Follow, Group, GroupBan, GroupDomainBlock, Post, Report
from tests.accounts.support import app, browser, token_in
from tests.support.app import InProcess
from tests.web.writing_support import actor, make_group, person


@dataclass(frozen=True)
class World:
    thread: str  # bob's thread in cats
    reply: str  # bob's reply in it


async def _world(fedi: InProcess) -> World:
    """ann owns cats, mia moderates it, bob is a member who posted; cid owns dogs."""
    urls = fedi.services.urls
    await make_group(fedi, "cats", "ann")
    await make_group(fedi, "dogs", "cid")
    async with fedi.services.sessionmaker() as session, session.begin():
        cats = await session.merge(await actor(fedi, "cats"))
        bob = await session.merge(await actor(fedi, "bob"))
        await join_local_group(session, urls, cats, bob)
        await moderation.set_moderator(session, urls, cats, await session.merge(
            await actor(fedi, "mia")), appoint=True)
        thread = (await post_to_group(session, urls, bob, cats, "Hello cats",
                                      title="Hi")).post
        reply = (await post_to_group(session, urls, bob, cats, "A reply",
                                     reply_to=thread.uri)).post
        return World(thread.uri, reply.uri)


async def _audit(fedi: InProcess) -> list[AuditEntry]:
    async with fedi.services.sessionmaker() as session:
        return list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))
                     ).scalars())


async def _post(fedi: InProcess, uri: str) -> Post:
    async with fedi.services.sessionmaker() as session:
        return (await session.execute(select(Post).where(Post.uri == uri))).scalar_one()


async def _act(http: httpx.AsyncClient, action: str, **fields: str) -> httpx.Response:
    page = await http.get("/groups/cats/moderation")
    assert page.status_code == 200, page.text[:300]
    return await http.post(f"/groups/cats/moderation/{action}",
                           data={"csrf": token_in(page), **fields})


def _mod_routes(fedi: InProcess) -> list[tuple[str, str]]:
    """Every route of the running app under a group's moderation path, with its method."""
    application = fedi.http._transport.app  # type: ignore[attr-defined]
    found = []
    for route in application.routes:
        path = re.sub(r"\{name(:str)?\}", "cats", route.path) if isinstance(route, Route) else ""
        if path.startswith("/groups/cats/moderation"):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append((method, path))
    return found


@pytest.mark.parametrize("who", ["member", "other-moderator", "visitor"])
async def test_every_moderation_route_refuses_who_does_not_moderate(
    database_url: str, who: str
) -> None:
    async with app(database_url) as fedi, person(fedi, "ann"), person(fedi, "mia"), \
            person(fedi, "bob") as bob, person(fedi, "cid") as cid, browser(fedi) as visitor:
        world = await _world(fedi)
        http = {"member": bob, "other-moderator": cid, "visitor": visitor}[who]
        token = token_in(await http.get("/login" if who == "visitor" else "/settings"))
        routes = _mod_routes(fedi)
        # The table the test walks is the app's: the dashboard and each action are in it.
        assert ("GET", "/groups/cats/moderation") in routes
        assert ("POST", "/groups/cats/moderation/ban") in routes and len(routes) > 15
        before = (len(await _audit(fedi)), await _post(fedi, world.thread))
        fields = {"csrf": token, "post": world.thread, "actor": "bob", "domain": "x.test",
                  "reason": "r", "report": "1", "resolution": "dismiss", "note": "n"}
        for method, path in routes:
            answer = await (http.get(path) if method == "GET" else http.post(path, data=fields))
            if who == "visitor":
                assert answer.status_code == 303, (method, path)
                assert answer.headers["location"].startswith("/login"), (method, path)
            else:
                assert answer.status_code in (403, 404), (method, path, answer.status_code)
                assert "moderator" in answer.text or "no such group" in answer.text
        after = (len(await _audit(fedi)), await _post(fedi, world.thread))
        assert after[0] == before[0]
        assert (after[1].deleted_at, after[1].locked_at, after[1].pinned_at) == (None,) * 3


async def test_page_actions_change_state_and_audit_the_moderator(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann"), person(fedi, "mia") as mia, \
            person(fedi, "bob"), person(fedi, "cid"):
        world = await _world(fedi)
        mia_uri, bob_uri = (await actor(fedi, "mia")).uri, (await actor(fedi, "bob")).uri
        shown = await mia.get("/groups/cats/moderation")
        assert shown.status_code == 200 and "Hello cats" not in shown.text  # nothing held
        assert "bob" in shown.text and "owner" in shown.text  # members with roles
        assert "Moderate" in (await mia.get("/groups/cats")).text

        for action in ("lock", "pin"):
            assert (await _act(mia, action, post=world.thread)).status_code == 303
        thread = await _post(fedi, world.thread)
        assert thread.locked_at is not None and thread.pinned_at is not None
        page = await mia.get(f"{world.thread.removeprefix('http://fedi.test')}")
        assert "Unlock thread" in page.text and "Unpin thread" in page.text
        removed = await _act(mia, "remove", post=world.reply, reason="off topic")
        assert removed.status_code == 303
        reply = await _post(fedi, world.reply)
        assert reply.deleted_at is not None and reply.held == "removed" and not reply.content
        assert (await _act(mia, "restore", post=world.reply)).status_code == 303
        reply = await _post(fedi, world.reply)
        assert reply.deleted_at is None and "A reply" in reply.content
        assert (await _act(mia, "block-domain", domain="Spam.Example")).status_code == 303
        assert (await _act(mia, "ban", actor="bob", reason="rude")).status_code == 303
        async with fedi.services.sessionmaker() as session:
            ban = (await session.execute(select(GroupBan))).scalar_one()
            assert ban.reason == "rude" and ban.banned_by == (await actor(fedi, "mia")).id
            assert not (await session.execute(select(Follow).where(
                Follow.follower_id == ban.actor_id))).first()
            assert (await session.execute(select(GroupDomainBlock.domain))).scalar_one() \
                == "spam.example"
        saved = await _act(mia, "settings", title="Cats!", summary="All about cats",
                           rules="Be kind\nNo dogs", questions="Why?", join_policy="approval",
                           privacy="public", reply_policy="members", premoderation="on",
                           report_threshold="2", allow_dislikes="on", icon="")
        assert saved.status_code == 303
        async with fedi.services.sessionmaker() as session:
            config = await session.get(Group, (await actor(fedi, "cats")).id)
            assert config is not None and config.premoderation and config.allow_dislikes
            assert (config.join_policy, config.report_threshold) == ("approval", 2)
            assert json.loads(config.rules) == ["Be kind", "No dogs"]
        assert (await actor(fedi, "cats")).name == "Cats!"

        rows = [(e.who, e.action, e.target, e.reason) for e in await _audit(fedi)]
        assert rows == [
            (mia_uri, "group.lock", world.thread, None),
            (mia_uri, "group.pin", world.thread, None),
            (mia_uri, "group.remove", world.reply, "off topic"),
            (mia_uri, "group.restore", world.reply, None),
            (mia_uri, "group.block-domain", "spam.example", None),
            (mia_uri, "group.ban", bob_uri, "rude"),
            (mia_uri, "group.settings", (await actor(fedi, "cats")).uri, None),
        ]


async def test_queue_requests_and_reports_from_the_dashboard(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann"), person(fedi, "mia") as mia, \
            person(fedi, "bob"), person(fedi, "cid"), person(fedi, "dee"):
        world = await _world(fedi)
        urls = fedi.services.urls
        async with fedi.services.sessionmaker() as session, session.begin():
            cats = await session.merge(await actor(fedi, "cats"))
            config = await session.get(Group, cats.id)
            assert config is not None
            config.premoderation, config.join_policy = True, "approval"
            dee = await session.merge(await actor(fedi, "dee"))
            await join_local_group(session, urls, cats, dee, answers="I love cats")
            held = (await post_to_group(session, urls, await session.merge(
                await actor(fedi, "bob")), cats, "Held text", title="Held")).post.uri
            report = await report_post(session, dee, await session.merge(
                await _post(fedi, world.reply)), "spam, private remark")
            report_id = report.id
        page = await mia.get("/groups/cats/moderation")
        assert "I love cats" in page.text and "Held text" in page.text
        assert "spam, private remark" in page.text and "A reply" in page.text
        assert (await _act(mia, "approve", actor="dee")).status_code == 303
        assert (await _act(mia, "approve-post", post=held)).status_code == 303
        assert (await _post(fedi, held)).held is None
        # A resolution without a note changes nothing; with one the post goes.
        refused = await _act(mia, "resolve-report", report=str(report_id), resolution="remove")
        assert refused.status_code == 400 and "Nothing was changed" in refused.text
        assert (await _post(fedi, world.reply)).deleted_at is None
        done = await _act(mia, "resolve-report", report=str(report_id), resolution="remove",
                          note="spam account")
        assert done.status_code == 303
        assert (await _post(fedi, world.reply)).deleted_at is not None
        async with fedi.services.sessionmaker() as session:
            row = await session.get(Report, report_id)
            assert row is not None and (row.state, row.resolution) == ("resolved", "remove")
        mia_uri = (await actor(fedi, "mia")).uri
        audit = [(e.who, e.action) for e in await _audit(fedi)]
        assert audit == [(mia_uri, "group.approve"), (mia_uri, "group.approve-post"),
                         (mia_uri, "group.remove"), (mia_uri, "report.resolve")]
        # The public log names mia and what she did, but not the report's private note.
        public = await fedi.http.get("/groups/cats/modlog")
        assert public.status_code == 200 and "approve-post" in public.text
        assert "spam account" not in public.text and "mia" in public.text
        assert "spam account" in (await mia.get("/groups/cats/modlog")).text


async def test_bad_input_changes_nothing(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann"), person(fedi, "mia") as mia, \
            person(fedi, "bob"), person(fedi, "cid") as cid:
        world = await _world(fedi)
        async with fedi.services.sessionmaker() as session, session.begin():
            dogs = await session.merge(await actor(fedi, "dogs"))
            dog_post = (await post_to_group(session, fedi.services.urls, await session.merge(
                await actor(fedi, "cid")), dogs, "Woof", title="Dogs")).post.uri
        # mia moderates cats, not dogs; through cats' routes a dogs post is unknown.
        other = await _act(mia, "lock", post=dog_post)
        assert other.status_code == 400 and "no post" in other.text
        assert (await _post(fedi, dog_post)).locked_at is None
        unknown = await _act(mia, "remove", post="http://fedi.test/posts/nope")
        assert unknown.status_code == 400 and "Nothing was changed" in unknown.text
        forged = await mia.post("/groups/cats/moderation/lock",
                                data={"csrf": "f" * 64, "post": world.thread})
        assert forged.status_code == 403 and (await _post(fedi, world.thread)).locked_at is None
        bad = await _act(mia, "settings", privacy="hidden", join_policy="open")
        assert bad.status_code == 400
        async with fedi.services.sessionmaker() as session:
            config = await session.get(Group, (await actor(fedi, "cats")).id)
            assert config is not None and config.privacy == "public"
        # cid owns dogs, and cats' dashboard is still not his.
        assert (await cid.get("/groups/cats/moderation")).status_code == 403
        assert (await mia.get("/groups/nothing/moderation")).status_code == 404
        assert await _audit(fedi) == []


async def test_hidden_group_log_is_for_members(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob:
        await make_group(fedi, "den", "ann", privacy="hidden")
        assert (await bob.get("/groups/den/modlog")).status_code == 404
        assert (await fedi.http.get("/groups/den/modlog")).status_code == 404
        assert (await bob.get("/groups/den/moderation")).status_code == 404
        assert (await ann.get("/groups/den/modlog")).status_code == 200


async def test_cli_as_names_the_moderator(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app(database_url) as fedi, person(fedi, "ann"), person(fedi, "mia"), \
            person(fedi, "bob"), person(fedi, "cid"):
        world = await _world(fedi)
        assert modlog.OPERATOR.who == audit.CLI_ADMIN  # one name for the shell, two modules
        monkeypatch.setenv("FEDI_DATABASE_URL", database_url)
        monkeypatch.setenv("FEDI_BASE_URL", "http://fedi.test")

        def cli(*args: str) -> int:
            return main(["mod", *args])

        # cid moderates another group: refused, nothing done or audited.
        assert await asyncio.to_thread(cli, "lock", "cats", world.thread, "--as", "cid") != 0
        assert await asyncio.to_thread(cli, "lock", "cats", world.thread, "--as", "bob") != 0
        assert (await _post(fedi, world.thread)).locked_at is None
        assert await asyncio.to_thread(cli, "lock", "cats", world.thread, "--as", "mia") == 0
        assert await asyncio.to_thread(cli, "remove", "cats", world.reply, "--reason", "spam",
                                       "--as", "mia") == 0
        assert await asyncio.to_thread(cli, "restore", "cats", world.reply) == 0
        assert (await _post(fedi, world.thread)).locked_at is not None
        assert (await _post(fedi, world.reply)).deleted_at is None
        mia_uri = (await actor(fedi, "mia")).uri
        assert [(e.who, e.action, e.target, e.reason) for e in await _audit(fedi)] == [
            (mia_uri, "group.lock", world.thread, None),
            (mia_uri, "group.remove", world.reply, "spam"),
            ("admin (cli)", "group.restore", world.reply, None),
        ]
        async with fedi.services.sessionmaker() as session:
            assert (await session.execute(select(func.count()).select_from(Report))
                    ).scalar_one() == 0
