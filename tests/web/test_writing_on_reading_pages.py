"""The writing partials on the reading pages: the group sidebar offers join / new thread /
leave by membership, every post offers like, reply, report (or edit and delete to its
author), and the forms they hold work as they are served. Only the page's own post holds a
reply form (with its one-time id); every other post links to its reply page."""

from __future__ import annotations

import re

from sqlalchemy import select

from fedi.store.models import Post
from tests.accounts.support import app, browser, token_in
from tests.web.writing_support import (
    NONCE,
    join_open,
    make_group,
    nonce_in,
    person,
    post_id,
    write_reply,
    write_thread,
)


def _article(page: str, post_id: int) -> str:
    """The opening of one post's article up to the next article (its own actions)."""
    start = page.index(f'id="p{post_id}"')
    end = page.find("<article", start)
    return page[start:end if end >= 0 else len(page)]


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


async def test_only_the_pages_own_post_holds_a_reply_form_the_others_link_to_theirs(
    database_url: str,
) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob:
        await make_group(fedi, "cats", "ann", join_policy="open")
        await join_open(bob, "cats")
        thread_uri = await write_thread(ann, "cats", "Naps", "Where?")
        thread_id = await post_id(fedi, thread_uri)
        reply_uri = await write_reply(bob, thread_uri, thread_id, "On the sofa")
        reply_id = await post_id(fedi, reply_uri)

        # The thread page: one form with a one-time id, on the thread's post; the reply
        # has a link to its reply page, and its like, edit and delete as before.
        page = await bob.get(thread_uri)
        assert len(NONCE.findall(page.text)) == 1
        top, nested = _article(page.text, thread_id), _article(page.text, reply_id)
        assert f'<form method="post" action="/posts/{thread_id}/reply">' in top
        assert 'name="nonce"' in top
        assert f'<a href="/posts/{reply_id}/reply" class="reply-link">Reply' in nested
        assert "<textarea" not in nested and 'name="nonce"' not in nested
        assert f'action="/posts/{reply_id}/like"' in nested
        assert f'href="/posts/{reply_id}/edit"' in nested  # bob's own

        # On the reply's own page it is the focused post: the form is its.
        own_page = await bob.get(reply_uri)
        assert f'<form method="post" action="/posts/{reply_id}/reply">' in own_page.text
        assert len(NONCE.findall(own_page.text)) == 1

        # The link leads to a reply form that posts once; sent again it is refused (409).
        reply_page = await ann.get(f"/posts/{reply_id}/reply")
        assert reply_page.status_code == 200
        fields = {"csrf": token_in(reply_page), "nonce": nonce_in(reply_page),
                  "body": "Mine too", "action": "post"}
        assert (await ann.post(f"/posts/{reply_id}/reply", data=fields)).status_code == 303
        assert (await ann.post(f"/posts/{reply_id}/reply", data=fields)).status_code == 409

        # A group page holds no reply form at all: each thread links to its reply page.
        listing = await bob.get("/groups/cats")
        assert not NONCE.search(listing.text)
        assert f'href="/posts/{thread_id}/reply"' in listing.text
        assert f'action="/posts/{thread_id}/like"' in listing.text


async def test_join_from_your_own_server_is_offered_only_to_people_not_signed_in_here(
    database_url: str,
) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob, browser(fedi) as anonymous:
        group = await make_group(fedi, "cats", "ann", join_policy="open")
        link = 'href="/groups/cats/remote-follow"'
        assert link in (await anonymous.get(group.uri)).text
        stranger = await bob.get(group.uri)  # signed in here, not a member
        assert link not in stranger.text and 'action="/groups/cats/join"' in stranger.text
        assert (await bob.post("/groups/cats/join", data={"csrf": token_in(stranger)})
                ).status_code == 303
        member = await bob.get(group.uri)
        assert link not in member.text and 'action="/groups/cats/leave"' in member.text
        assert link not in (await ann.get(group.uri)).text  # its owner
