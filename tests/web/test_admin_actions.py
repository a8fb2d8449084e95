"""Admin page actions change what the CLI's calls change, audited under the admin who acted;
bad input changes nothing and says why."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from fedi.accounts import instance, registration, suspension
from fedi.store.models import Account, AuditEntry, DomainBlock, Group, User, WebSession
from tests.accounts.support import app, browser, log_in, sign_up
from tests.support.app import InProcess
from tests.web.admin_support import act, audited, signed_up_admin, uri_of


async def _actor_id(fedi: InProcess, name: str) -> int:
    from fedi.actors.local import find_local
    async with fedi.services.sessionmaker() as session:
        found = await find_local(session, name)
        assert found is not None
        return found.id


async def test_instance_settings_and_registrations(database_url: str) -> None:
    async with app(database_url) as fedi, browser(fedi) as http:
        root = await signed_up_admin(fedi, http)
        done = await act(http, "/admin", "/admin/instance", description="A place.",
                         rules="Be kind\nNo spam", contact="admin@example.org")
        assert done.status_code == 200 and "Saved" in done.text
        done = await act(http, "/admin", "/admin/registrations/mode", mode="approval")
        assert done.status_code == 200
        async with browser(fedi) as applicant:
            await sign_up(applicant, "newbie", reason="I like gardens")
        page = await http.get("/admin")
        assert "I like gardens" in page.text and "newbie" in page.text
        assert (await act(http, "/admin", "/admin/registrations/approve",
                          name="newbie")).status_code == 200
        async with fedi.services.sessionmaker() as session:
            about = await instance.load(session)
            assert about.rules == ("Be kind", "No spam")
            assert await registration.get_mode(session) == "approval"
            account = await session.get(Account, await _actor_id(fedi, "newbie"))
            assert account is not None and account.approved
        for action in ("instance-about", "registrations", "registration-approve"):
            assert [e.who for e in await audited(fedi, action)] == [root]
        # Approving again: nothing to approve, a clear message.
        again = await act(http, "/admin", "/admin/registrations/approve", name="newbie")
        assert again.status_code == 400 and "not waiting for approval" in again.text


async def test_users_suspend_make_admin_delete_and_reset(database_url: str) -> None:
    async with app(database_url) as fedi, browser(fedi) as http:
        root = await signed_up_admin(fedi, http)
        async with browser(fedi) as bob:
            await sign_up(bob, "bob")
            assert (await log_in(bob, "bob")).status_code == 303
            page = await http.get("/admin/users?q=bo")
            assert "bob" in page.text and "root" not in page.text.split("<caption>")[1]
            done = await act(http, "/admin/users", "/admin/users/bob/suspend", reason="spam")
            assert done.status_code == 200
            bob_id = await _actor_id(fedi, "bob")
            async with fedi.services.sessionmaker() as session:
                assert (await suspension.find(session, bob_id)) is not None
                assert (await session.execute(select(func.count()).select_from(WebSession)
                        .where(WebSession.actor_id == bob_id))).scalar_one() == 0
            assert (await bob.get("/admin")).status_code == 303  # signed out
            refused = await log_in(bob, "bob")
            assert refused.status_code != 303 and "suspended" in refused.text
        assert (await act(http, "/admin/users", "/admin/users/bob/unsuspend")).status_code == 200
        assert (await act(http, "/admin/users", "/admin/users/bob/make-admin")).status_code == 200
        reset = await act(http, "/admin/users", "/admin/users/bob/reset-password")
        assert "/reset/" in reset.text
        async with fedi.services.sessionmaker() as session:
            user = await session.get(User, bob_id)
            assert user is not None and user.is_admin
            assert await suspension.find(session, bob_id) is None
        # Deleting needs the name typed; a wrong one changes nothing.
        wrong = await act(http, "/admin/users", "/admin/users/bob/delete", confirm="bo")
        assert wrong.status_code == 400 and "Nothing was changed" in wrong.text
        assert await audited(fedi, "user.delete") == []
        gone = await act(http, "/admin/users", "/admin/users/bob/delete", confirm="bob")
        assert gone.status_code == 200
        async with fedi.services.sessionmaker() as session:
            account = await session.get(Account, bob_id)
            assert account is not None and account.password_hash is None
            assert await suspension.find(session, bob_id) is not None
        bob_uri = await uri_of(fedi, "bob")
        for action in ("user.suspend", "user.unsuspend", "user.admin", "reset-password",
                       "user.delete"):
            entries = await audited(fedi, action)
            assert [(e.who, e.target) for e in entries] == [(root, bob_uri)], action
        # An admin cannot suspend themselves.
        own = await act(http, "/admin/users", "/admin/users/root/suspend")
        assert own.status_code == 400 and "yourself" in own.text


async def test_groups_create_edit_transfer_delete(database_url: str) -> None:
    async with app(database_url) as fedi, browser(fedi) as http:
        root = await signed_up_admin(fedi, http)
        async with browser(fedi) as carol:
            await sign_up(carol, "carol")
        made = await act(http, "/admin/groups", "/admin/groups", name="garden", owner="root",
                         title="Garden", privacy="public", rules="Be nice")
        assert made.status_code == 200
        edited = await act(http, "/admin/groups/garden", "/admin/groups/garden/edit",
                           title="Gardens", summary="Plants", rules="One\nTwo", join="approval")
        assert edited.status_code == 200
        moved = await act(http, "/admin/groups/garden", "/admin/groups/garden/transfer",
                          owner="carol")
        assert moved.status_code == 200
        group_id = await _actor_id(fedi, "garden")
        async with fedi.services.sessionmaker() as session:
            config = await session.get(Group, group_id)
            assert config is not None and config.join_policy == "approval"
            assert json.loads(config.rules) == ["One", "Two"]
            assert config.owner_id == await _actor_id(fedi, "carol")
        page = await http.get("/admin/groups/garden")
        assert "carol — owner" in page.text and "root — moderator" in page.text
        bad = await act(http, "/admin/groups/garden", "/admin/groups/garden/edit", join="open",
                        title="x" * 300)
        assert bad.status_code == 400
        deleted = await act(http, "/admin/groups/garden", "/admin/groups/garden/delete",
                            confirm="garden")
        assert deleted.status_code == 200
        async with fedi.services.sessionmaker() as session:
            config = await session.get(Group, group_id)
            assert config is not None and config.privacy == "hidden"
        for action in ("group.create", "group.edit", "group.transfer", "group.delete"):
            assert [(e.who, e.group_id) for e in await audited(fedi, action)] == [
                (root, group_id)], action


async def test_domain_blocks_and_audit_filters(database_url: str) -> None:
    async with app(database_url) as fedi, browser(fedi) as http:
        root = await signed_up_admin(fedi, http)
        added = await act(http, "/admin/federation", "/admin/federation/blocks",
                          domain="Bad.Example", severity="silence", reason="spam",
                          expires_in_days="3")
        assert added.status_code == 200
        changed = await act(http, "/admin/federation", "/admin/federation/blocks",
                            domain="bad.example", severity="suspend", reject_media="on")
        assert changed.status_code == 200
        async with fedi.services.sessionmaker() as session:
            block = await session.get(DomainBlock, "bad.example")
            assert block is not None and block.severity == "suspend" and block.reject_media
        export = await http.get("/admin/federation/export.csv")
        assert "bad.example,suspend" in export.text
        bad = await act(http, "/admin/federation", "/admin/federation/blocks",
                        domain="x.example", severity="suspend", expires_in_days="-1")
        assert bad.status_code == 400
        removed = await act(http, "/admin/federation", "/admin/federation/blocks/remove",
                            domain="bad.example")
        assert removed.status_code == 200
        async with fedi.services.sessionmaker() as session:
            assert await session.get(DomainBlock, "bad.example") is None
            assert await session.get(DomainBlock, "x.example") is None
            whos = set((await session.execute(select(AuditEntry.who))).scalars())
        assert whos == {root}
        log = await http.get("/admin/audit", params={"action": "domain_block."})
        assert log.status_code == 200 and "bad.example" in log.text
        none = await http.get("/admin/audit", params={"who": "nobody"})
        assert "bad.example" not in none.text
        wrong = await http.get("/admin/audit", params={"since": "yesterday"})
        assert wrong.status_code == 400 and "not a date" in wrong.text
