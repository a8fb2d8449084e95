"""The writing partials on the reading pages: the group sidebar offers join / new thread /
leave by membership, every post offers like, reply, report (or edit and delete to its
author), and the forms they hold work as they are served."""

from __future__ import annotations

import re

from sqlalchemy import select

from fedi.store.models import Post
from tests.accounts.support import app, browser, token_in
from tests.web.writing_support import make_group, nonce_in, person


async def test_actions_on_the_group_and_thread_pages(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob, browser(fedi) as anonymous:
        group = await make_group(fedi, "cats", "ann")
        form = await ann.get("/groups/cats/new")
        thread_uri = (await ann.post("/groups/cats/new", data={
            "csrf": token_in(form), "nonce": nonce_in(form), "title": "Naps",
            "body": "Where?", "action": "post"})).headers["location"]
        async with fedi.services.sessionmaker() as session:
            thread = (await session.execute(
                select(Post).where(Post.uri == thread_uri))).scalar_one()

        # A stranger to the group: a Join button, which works from the page as served.
        side = await bob.get(group.uri)
        assert side.status_code == 200
        assert 'action="/groups/cats/join"' in side.text and "New thread" not in side.text
        joined = await bob.post("/groups/cats/join", data={"csrf": token_in(side)})
        assert joined.status_code == 303
        side = await bob.get(group.uri)
        assert 'href="/groups/cats/new"' in side.text and 'action="/groups/cats/leave"' in side.text

        # On the thread: bob may like, reply and report; the author may edit and delete.
        page = await bob.get(thread_uri)
        assert f'action="/posts/{thread.id}/like"' in page.text
        assert f'action="/posts/{thread.id}/reply"' in page.text
        assert f'href="/posts/{thread.id}/report"' in page.text
        assert f'/posts/{thread.id}/edit' not in page.text
        own = await ann.get(thread_uri)
        assert f'href="/posts/{thread.id}/edit"' in own.text
        # No inline script or style in what the partials add (the CSP forbids both).
        assert not re.search(r"<script(?![^>]*\bsrc=)|\sstyle=|\son[a-z]+=", page.text)

        # The reply box on the thread page posts a reply, once.
        fields = {"csrf": token_in(page), "nonce": nonce_in(page), "body": "On the sofa",
                  "action": "post"}
        replied = await bob.post(f"/posts/{thread.id}/reply", data=fields)
        assert replied.status_code == 303
        assert (await bob.post(f"/posts/{thread.id}/reply", data=fields)).status_code == 409
        assert "On the sofa" in (await bob.get(thread_uri)).text
        liked = await bob.post(f"/posts/{thread.id}/like", data={
            "csrf": token_in(page), "next": f"/posts/{thread_uri.rsplit('/', 1)[1]}"})
        assert liked.status_code == 303
        assert 'aria-pressed="true"' in (await bob.get(thread_uri)).text

        # Signed out: no forms, a way to log in.
        outside = await anonymous.get(group.uri)
        assert "Log in" in outside.text and 'action="/groups/cats/join"' not in outside.text
        assert f'action="/posts/{thread.id}/like"' not in (await anonymous.get(thread_uri)).text
