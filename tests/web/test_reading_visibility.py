"""Who sees what on the reading pages: a member, an anonymous visitor, an outsider and a
person who left; counts that match what is shown; a person's page that never lists held
or refused posts to others."""

from __future__ import annotations

import re

from sqlalchemy import update

from fedi.actors.local import find_local
from fedi.groups import moderation
from fedi.store.models import Group
from tests.web.reading_world import World, shown, world

AP = "application/activity+json"


def replies_said(page_text: str, post_id: int) -> int:
    """The reply count a listing shows for one thread."""
    entry = page_text.split(f'id="p{post_id}"', 1)[1].split("</article>", 1)[0]
    found = re.search(r">(\d+) repl(?:y|ies)</a>", entry)
    assert found, entry
    return int(found.group(1))


async def test_members_see_members_only_posts_and_people_who_left_no_longer_do(
    database_url: str,
) -> None:
    async with world(database_url) as (w, stack):
        for name in ("olga", "mia", "eve", "otto"):
            await w.person(name, stack)
        await w.group("cats", "olga")
        for name in ("mia", "eve"):
            await w.join("cats", name)
        public = await w.post("olga", "cats", "open to all", title="Public thread")
        hidden_reply = await w.post("mia", "cats", "for members", reply_to=public,
                                    visibility="members")
        open_reply = await w.post("olga", "cats", "for anyone", reply_to=public)
        under_hidden = await w.post("olga", "cats", "below a members-only reply",
                                    reply_to=hidden_reply)
        members = await w.post("olga", "cats", "members talk", title="Members thread",
                               visibility="members")
        sees_all = {public.id, hidden_reply.id, open_reply.id, under_hidden.id}

        async def check(who: str | None, member: bool) -> None:
            group = await w.page(who, "/groups/cats")
            thread = await w.page(who, public.uri)
            assert (members.id in shown(group)) is member, who
            expected = sees_all if member else {public.id, open_reply.id}
            assert set(shown(thread)) == expected, who
            # The listing's count is the number of replies the thread page shows.
            assert replies_said(group.text, public.id) == len(expected) - 1, who
            client = w.browsers[who] if who else w.fedi.http
            answer = await client.get(members.uri, headers={"Accept": "text/html"})
            assert answer.status_code == (200 if member else 404), who
            if member:
                assert "members talk" in answer.text
            else:
                assert "members talk" not in answer.text

        for who, member in ((None, False), ("otto", False), ("mia", True), ("eve", True),
                            ("olga", True)):
            await check(who, member)
        await w.leave("cats", "eve")
        await check("eve", False)
        await check("mia", True)
        # A session cookie is not a signature: ActivityPub answers as to anyone.
        fetched = await w.browsers["mia"].get(members.uri, headers={"Accept": AP})
        assert fetched.status_code == 404


async def test_held_replies_are_not_counted_for_those_who_cannot_see_them(
    database_url: str,
) -> None:
    """The "3 replies" that showed one: held and removed replies count only where shown."""
    async with world(database_url) as (w, stack):
        for name in ("olga", "mia"):
            await w.person(name, stack)
        await w.group("cats", "olga")
        await w.join("cats", "mia")
        thread = await w.post("olga", "cats", "hello", title="Hello")
        await w.post("mia", "cats", "shown", reply_to=thread)
        held = await w.post("mia", "cats", "waiting", reply_to=thread)
        removed = await w.post("mia", "cats", "removed", reply_to=thread)
        await w.change(held, held="premoderation")
        await w.change(removed, held="removed", deleted_at=1.0, content="")
        for who, expected in ((None, 1), ("mia", 2), ("olga", 2)):
            # mia wrote the held one; olga moderates. Nobody counts the removed one.
            group = await w.page(who, "/groups/cats")
            page = await w.page(who, thread.uri)
            assert replies_said(group.text, thread.id) == expected, who
            assert f"<summary>{expected} repl" in page.text, who
            assert len([i for i in shown(page) if i != thread.id
                        and i != removed.id]) == expected, who
        assert "waiting for a moderator" in (await w.page("mia", thread.uri)).text


async def _premoderated(w: World, name: str) -> None:
    async with w.fedi.services.sessionmaker() as session, session.begin():
        group = await find_local(session, name)
        assert group is not None
        await session.execute(update(Group).where(Group.actor_id == group.id)
                              .values(premoderation=True))


async def test_a_persons_page_lists_held_and_refused_posts_to_nobody_else(
    database_url: str,
) -> None:
    async with world(database_url) as (w, stack):
        for name in ("olga", "mia", "otto"):
            await w.person(name, stack)
        await w.group("strict", "olga")
        await w.join("strict", "mia")
        await _premoderated(w, "strict")
        admitted = await w.post("mia", "strict", "let through", title="First")
        held = await w.post("mia", "strict", "still held", title="Second")
        refused = await w.post("mia", "strict", "refused", title="Third")
        members = await w.post("mia", "strict", "members", title="Fourth", visibility="members")
        async with w.fedi.services.sessionmaker() as session, session.begin():
            group = await find_local(session, "strict")
            assert group is not None
            await moderation.approve_post(session, w.fedi.services.urls, group, admitted.uri)
            await moderation.approve_post(session, w.fedi.services.urls, group, members.uri)
            await moderation.reject_post(session, w.fedi.services.urls, group, refused.uri)
        mia_page = "/users/mia"
        for who, expected in ((None, {admitted.id}), ("otto", {admitted.id}),
                              ("mia", {admitted.id, held.id, members.id}),
                              ("olga", {admitted.id, held.id, members.id})):
            page = await w.page(who, mia_page)
            assert set(shown(page)) == expected, who
            assert f'<span class="meta">({len(expected)})</span>' in page.text, who
            assert "refused" not in page.text
        assert "still held" not in (await w.page(None, mia_page)).text
        assert "waiting for a moderator" in (await w.page("mia", mia_page)).text


async def test_home_feed_shows_threads_of_my_groups_newest_activity_first(
    database_url: str,
) -> None:
    async with world(database_url) as (w, stack):
        for name in ("olga", "mia"):
            await w.person(name, stack)
        for name in ("cats", "dogs", "birds"):
            await w.group(name, "olga")
        await w.join("cats", "mia")
        await w.join("dogs", "mia")
        cats = await w.post("olga", "cats", "cats", title="Cats", at=1000.0)
        dogs = await w.post("olga", "dogs", "dogs", title="Dogs", at=2000.0)
        birds = await w.post("olga", "birds", "birds", title="Birds", at=3000.0)
        private = await w.post("olga", "dogs", "members", title="Dog members",
                               visibility="members", at=1500.0)
        front = await w.page("mia", "/")
        home_part = front.text.split('id="groups-heading"', 1)[0]
        assert shown(home_part) == [dogs.id, private.id, cats.id]
        await w.post("olga", "cats", "new answer", reply_to=cats)  # cats is active again
        assert shown(await w.page("mia", "/home"))[:3] == [cats.id, dogs.id, private.id]
        assert birds.id not in shown(await w.page("mia", "/home"))
        anonymous = await w.page(None, "/")
        assert "Your groups" not in anonymous.text and shown(anonymous) == []
        redirect = await w.fedi.http.get("/home")
        assert redirect.status_code == 303 and "/login" in redirect.headers["location"]
