"""Bios on actor pages and the directory: a local bio shows as the paragraphs it is stored as
(not as literal tags), and a remote server's bio is cleaned (no script, no javascript:)."""

from __future__ import annotations

from urllib.parse import quote

from fedi.accounts.profile import update_profile
from fedi.actors.documents import document_of
from fedi.actors.local import create_group, create_user
from fedi.groups import group_settings
from fedi.store.models import Actor
from tests.support.app import running_app

EVIL = ('<p>Hi<script>alert(1)</script> <a href="javascript:alert(2)">x</a>'
        '<img src=x onerror="alert(3)"></p>')


async def test_local_bios_are_paragraphs_and_remote_bios_are_cleaned(database_url: str) -> None:
    async with running_app(database_url) as fedi:
        urls = fedi.services.urls
        async with fedi.services.sessionmaker() as session, session.begin():
            alice = await create_user(session, urls, "alice")
            await session.flush()
            await update_profile(session, urls, lambda a: document_of(a, urls), alice.id, "Alice",
                                 "I like <b>cats</b>\n\nand dogs")
            group = await create_group(session, urls, "cats", owner="alice")
            await session.flush()
            await group_settings.update(session, urls, group, group_settings.Changes(
                summary="All about <cats>"))
            session.add(Actor(uri="https://far.example/users/eve", type="Person", local=False,
                              username="eve", domain="far.example", summary=EVIL,
                              inbox="https://far.example/users/eve/inbox"))
        page = (await fedi.http.get("/users/alice")).text
        assert "<p>I like &lt;b&gt;cats&lt;/b&gt;</p>" in page
        assert "&lt;p&gt;" not in page
        directory = (await fedi.http.get("/")).text
        assert "All about &lt;cats&gt;" in directory and "&lt;p&gt;" not in directory
        remote = await fedi.http.get(f"/lookup?q={quote('https://far.example/users/eve')}")
        assert remote.status_code == 200
        assert "<p>Hi" in remote.text
        assert "<script>alert(1)" not in remote.text
        assert "javascript:" not in remote.text and "onerror" not in remote.text
