"""The blocklist import through the pages: upload → preview (severed memberships per domain)
→ apply → undo; a CSV with bad rows and an undo with nothing to undo change nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from fedi.store.models import Actor, AuditEntry, DomainBlock, Follow
from tests.accounts.support import app, browser, token_in
from tests.support.app import InProcess
from tests.web.admin_support import act, audited, signed_up_admin

CSV = "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n" \
      "spam.example,suspend,false,false,spam,false\nloud.example,silence,true,false,,false\n"


async def _remote_member(fedi: InProcess, group_name: str) -> None:
    from fedi.actors.local import create_group, create_user
    async with fedi.services.sessionmaker() as session, session.begin():
        await create_user(session, fedi.services.urls, "owner")
        group = await create_group(session, fedi.services.urls, group_name, owner="owner")
        remote = Actor(uri="https://spam.example/users/eve", type="Person", local=False,
                       username="eve", domain="spam.example",
                       inbox="https://spam.example/users/eve/inbox")
        session.add(remote)
        await session.flush()
        session.add(Follow(follower_id=remote.id, target_id=group.id, state="accepted"))


async def _count(fedi: InProcess, model: type) -> int:
    async with fedi.services.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model)))
                   .scalar_one())


async def test_upload_preview_apply_undo(database_url: str) -> None:
    async with app(database_url) as fedi, browser(fedi) as http:
        root = await signed_up_admin(fedi, http)
        await _remote_member(fedi, "garden")
        form = await http.get("/admin/federation/import")
        preview = await http.post("/admin/federation/import/preview", data={
            "csrf": token_in(form)}, files={"file": ("blocks.csv", CSV.encode(), "text/csv")})
        assert preview.status_code == 200
        assert "spam.example" in preview.text and "loud.example" in preview.text
        assert "sever 1 membership(s)" in preview.text
        assert await _count(fedi, DomainBlock) == 0  # a preview writes nothing
        applied = await act(http, "/admin/federation/import", "/admin/federation/import/apply",
                            csv=CSV)
        assert applied.status_code == 200 and "severed 1 membership(s)" in applied.text
        async with fedi.services.sessionmaker() as session:
            spam = await session.get(DomainBlock, "spam.example")
            loud = await session.get(DomainBlock, "loud.example")
            assert spam is not None and spam.severity == "suspend"
            assert loud is not None and loud.reject_media
        assert await _count(fedi, Follow) == 0  # the spam.example membership was severed
        undone = await act(http, "/admin/federation/import", "/admin/federation/import/undo")
        assert undone.status_code == 200 and "restored 2 domain(s)" in undone.text
        assert await _count(fedi, DomainBlock) == 0
        again = await act(http, "/admin/federation/import", "/admin/federation/import/undo")
        assert again.status_code == 400 and "no applied blocklist import" in again.text
        async with fedi.services.sessionmaker() as session:
            whos = set((await session.execute(select(AuditEntry.who))).scalars())
        assert whos == {root}
        for action in ("domain_block.import", "domain_block.undo_import"):
            assert [e.who for e in await audited(fedi, action)] == [root], action


async def test_bad_rows_are_named_and_nothing_is_applied(database_url: str) -> None:
    async with app(database_url) as fedi, browser(fedi) as http:
        await signed_up_admin(fedi, http)
        bad = (CSV + "not a domain!,suspend,false,false,,false\n"
               "ok.example,explode,false,false,,false\n")
        preview = await act(http, "/admin/federation/import",
                            "/admin/federation/import/preview", csv=bad)
        assert preview.status_code == 400
        assert "line 4" in preview.text and "line 5" in preview.text
        applied = await act(http, "/admin/federation/import", "/admin/federation/import/apply",
                            csv=bad)
        assert applied.status_code == 400 and "Nothing was changed" in applied.text
        assert await _count(fedi, DomainBlock) == 0
        assert await _count(fedi, AuditEntry) == 0
