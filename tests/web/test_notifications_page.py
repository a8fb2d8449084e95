"""The notifications page: unread count in every page's header, newest first, permalinks,
mark read (one, all; CSRF-checked), pages of 30, and the gate asked again at read time."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy import func, select

from fedi.actors.local import create_group, find_local
from fedi.groups import moderation, notices
from fedi.groups.membership import join_local_group, leave_local_group
from fedi.groups.posting import delete_post, post_to_group
from fedi.store.models import Actor, Notification, Post
from tests.accounts.support import app, browser, log_in, post_form, sign_up, token_in
from tests.support.app import InProcess

HTML = {"Accept": "text/html"}
IDS = re.compile(r'name="id" value="(\d+)"')


@dataclass
class Site:
    fedi: InProcess
    bob: httpx.AsyncClient  # ann browses with fedi.http

    async def actor(self, name: str) -> Actor:
        async with self.fedi.services.sessionmaker() as session:
            found = await find_local(session, name)
        assert found is not None
        return found

    async def post(self, name: str, text: str, group: str = "g", **options: object) -> Post:
        async with self.fedi.services.sessionmaker() as session, session.begin():
            author, target = await find_local(session, name), await find_local(session, group)
            assert author is not None and target is not None
            published = await post_to_group(session, self.fedi.services.urls, author, target,
                                            text, **options)  # type: ignore[arg-type]
            return published.post

    async def unread(self, name: str) -> int:
        person = await self.actor(name)
        async with self.fedi.services.sessionmaker() as session:
            return int((await session.execute(
                select(func.count()).select_from(Notification).where(
                    Notification.recipient_id == person.id,
                    Notification.read_at.is_(None)))).scalar_one())


@asynccontextmanager
async def site(database_url: str) -> AsyncIterator[Site]:
    async with app(database_url) as fedi, browser(fedi) as bob:
        for name, http in (("ann", fedi.http), ("bob", bob)):
            assert (await sign_up(http, name)).status_code in (200, 303)
            assert (await log_in(http, name)).status_code == 303
        urls = fedi.services.urls
        async with fedi.services.sessionmaker() as session, session.begin():
            await create_group(session, urls, "g", owner="ann")
            await create_group(session, urls, "club", owner="ann", privacy="private")
            bob_actor = await find_local(session, "bob")
            assert bob_actor is not None
            for name in ("g", "club"):
                group = await find_local(session, name)
                assert group is not None
                await join_local_group(session, urls, group, bob_actor)
            club = await find_local(session, "club")
            assert club is not None
            await moderation.approve(session, urls, club, bob_actor)
            ann = await find_local(session, "ann")
            assert ann is not None
            await notices.dismiss(session, ann)  # bob's request to join the club, answered
        yield Site(fedi, bob)


def header(page: httpx.Response) -> str:
    return page.text.split("</nav>")[0]


async def test_the_header_counts_unread_and_the_page_lists_newest_first(
    database_url: str,
) -> None:
    async with site(database_url) as s:
        front = await s.fedi.http.get("/", headers=HTML)
        assert '<a href="/notifications" class="notifications">Notifications</a>' in header(front)
        thread = await s.post("ann", "A thread.")
        first = await s.post("bob", "First answer", reply_to=thread.uri)
        second = await s.post("bob", "Second answer", reply_to=thread.uri)
        for path in ("/", "/groups/g", "/settings"):
            shown = header(await s.fedi.http.get(path, headers=HTML))
            assert '<span aria-hidden="true">(2)</span>' in shown, path
            assert '<span class="visually-hidden">, 2 unread</span>' in shown, path
        assert "(1)" in header(await s.bob.get("/", headers=HTML))  # joining the club

        page = await s.fedi.http.get("/notifications")
        assert page.status_code == 200
        text = page.text
        assert text.index("Second answer") < text.index("First answer")
        assert text.count('class="notification unread"') == 2
        for reply in (first, second):  # permalinks: the reply's page, at the reply
            assert f'href="{reply.uri}#p{reply.id}"' in text
        assert f'href="{thread.uri}' not in text
        assert "replied to your post" in text

        async with browser(s.fedi) as anonymous:
            answer = await anonymous.get("/notifications")
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/login?next=/notifications")


async def test_mark_read_one_then_all_and_a_forged_form_changes_nothing(
    database_url: str,
) -> None:
    async with site(database_url) as s:
        thread = await s.post("ann", "A thread.")
        for n in range(3):
            await s.post("bob", f"Answer {n}", reply_to=thread.uri)
        assert await s.unread("ann") == 3
        page = await s.fedi.http.get("/notifications")
        ids = IDS.findall(page.text)
        assert len(ids) == 3

        forged = await s.fedi.http.post("/notifications/read", data={"csrf": "forged"})
        assert forged.status_code == 403
        assert "Nothing was changed" in forged.text
        missing = await s.fedi.http.post("/notifications/read", data={"id": ids[0]})
        assert missing.status_code == 403
        # bob's own token is not ann's, and another's notification is not bob's to mark.
        bob_token = token_in(await s.bob.get("/notifications"))
        other = await s.fedi.http.post("/notifications/read",
                                       data={"csrf": bob_token, "id": ids[0]})
        assert other.status_code == 403
        stolen = await s.bob.post("/notifications/read", data={"csrf": bob_token, "id": ids[0]})
        assert stolen.status_code == 303
        assert await s.unread("ann") == 3

        done = await post_form(s.fedi.http, "/notifications", "/notifications/read", id=ids[0])
        assert done.status_code == 303 and done.headers["location"] == "/notifications"
        assert await s.unread("ann") == 2
        page = await s.fedi.http.get("/notifications")
        assert page.text.count('class="notification unread"') == 2
        assert f'id="n{ids[0]}"' in page.text  # still listed, read
        assert "(2)" in header(page)

        bad = await post_form(s.fedi.http, "/notifications", "/notifications/read", id="x²")
        assert bad.status_code == 400
        assert await s.unread("ann") == 2

        await post_form(s.fedi.http, "/notifications", "/notifications/read")
        assert await s.unread("ann") == 0
        page = await s.fedi.http.get("/notifications")
        assert 'class="notification unread"' not in page.text
        assert "Mark all read" not in page.text
        assert '<a href="/notifications" class="notifications">Notifications</a>' in header(page)
        assert await s.unread("bob") == 1  # bob's own notification is untouched


async def test_thirty_a_page_newest_first(database_url: str) -> None:
    async with site(database_url) as s:
        ann, club = await s.actor("ann"), await s.actor("club")
        async with s.fedi.services.sessionmaker() as session, session.begin():
            session.add_all(
                Notification(recipient_id=ann.id, kind="join_approved", group_id=club.id,
                             created_at=1_700_000_000 + n)
                for n in range(35))
        first = await s.fedi.http.get("/notifications")
        ids = [int(i) for i in IDS.findall(first.text)]
        assert len(ids) == 30 and ids == sorted(ids, reverse=True)
        older = re.search(r'href="/notifications\?before=(\d+)" rel="next"', first.text)
        assert older is not None
        second = await s.fedi.http.get(f"/notifications?before={older.group(1)}")
        rest = [int(i) for i in IDS.findall(second.text)]
        assert len(rest) == 5 and max(rest) < min(ids)
        assert 'rel="next"' not in second.text
        assert 'href="/notifications">Newest</a>' in second.text
        # Marking read from the second page comes back to it.
        back = await post_form(s.fedi.http, f"/notifications?before={older.group(1)}",
                               "/notifications/read", id=str(rest[0]),
                               before=older.group(1))
        assert back.headers["location"] == f"/notifications?before={older.group(1)}"


async def test_a_post_no_longer_visible_is_shown_without_its_content(
    database_url: str,
) -> None:
    async with site(database_url) as s:
        bob = await s.actor("bob")
        secret = await s.post("ann", "Members only, bob", group="club", mentions=[bob])
        public = await s.post("ann", "Public words for bob", mentions=[bob])
        page = await s.bob.get("/notifications")
        assert "Members only, bob" in page.text and "Public words for bob" in page.text
        assert f"#p{secret.id}" in page.text

        async with s.fedi.services.sessionmaker() as session, session.begin():
            await leave_local_group(session, await s.actor("club"), bob)
            await delete_post(session, s.fedi.services.urls, await s.actor("ann"), public.uri)
        page = await s.bob.get("/notifications")
        assert page.text.count("mentioned you") == 2
        assert "Members only" not in page.text and "Public words" not in page.text
        assert f"#p{secret.id}" not in page.text and f"#p{public.id}" not in page.text
        assert page.text.count("The post is no longer available to you.") == 2
