"""Reading pages (issue 8 item 3): the directory, a group's threads, a thread as a tree and
a person's page, as people in browsers see them."""

from __future__ import annotations

import re
import time

from sqlalchemy import update

from fedi.actors.local import find_local
from fedi.content import sanitize_html
from fedi.store.models import Group
from tests.web.reading_world import shown, world

HOUR = 3600.0


async def test_a_groups_threads_sort_hot_new_active_with_pinned_first(database_url: str) -> None:
    async with world(database_url) as (w, stack):
        await w.person("olga", stack)
        await w.group("cats", "olga")
        now = time.time()
        old = await w.post("olga", "cats", "old", title="Old", at=now - 10 * HOUR)
        middle = await w.post("olga", "cats", "middle", title="Middle", at=now - 5 * HOUR)
        new = await w.post("olga", "cats", "new", title="New", at=now - 1 * HOUR)
        await w.post("olga", "cats", "a late answer", reply_to=old)  # old is active again

        async def order(sort: str) -> list[int]:
            page = await w.page(None, f"/groups/cats?sort={sort}")
            return [i for i in shown(page) if i in (old.id, middle.id, new.id)]

        assert await order("new") == [new.id, middle.id, old.id]
        assert await order("active") == [old.id, new.id, middle.id]
        assert await order("hot") == [new.id, middle.id, old.id]
        await w.change(old, like_count=50)  # much liked: hot beats its age
        assert await order("hot") == [old.id, new.id, middle.id]
        assert await order("nonsense") == await order("hot")  # an unknown sort is the default

        await w.change(middle, pinned_at=now)
        for sort in ("hot", "new", "active"):
            assert (await order(sort))[0] == middle.id, sort
        page = await w.page(None, "/groups/cats?sort=new")
        assert "pinned" in page.text
        assert '<strong aria-current="true">new</strong>' in page.text


async def test_a_groups_threads_come_in_pages_of_25(database_url: str) -> None:
    async with world(database_url) as (w, stack):
        await w.person("olga", stack)
        await w.group("cats", "olga")
        now = time.time()
        posts = [await w.post("olga", "cats", f"thread {n}", title=f"T{n}", at=now - n * 60)
                 for n in range(30)]
        first = await w.page(None, "/groups/cats?sort=new")
        second = await w.page(None, "/groups/cats?sort=new&page=2")
        assert shown(first) == [p.id for p in posts[:25]]
        assert shown(second) == [p.id for p in posts[25:]]
        assert 'href="/groups/cats?sort=new&amp;page=2" rel="next"' in first.text
        assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
        for bad in ("0", "-1", "x", "99999999999999999999"):
            assert shown(await w.page(None, f"/groups/cats?sort=new&page={bad}")) == shown(first)


async def test_the_directory_searches_and_sorts(database_url: str) -> None:
    async with world(database_url) as (w, stack):
        for name in ("olga", "mia", "max"):
            await w.person(name, stack)
        await w.group("cats", "olga", title="Cat people", summary="Whiskers and naps")
        await w.group("dogs", "olga", title="Dog people", summary="Walks")
        await w.group("ferrets", "olga", summary="100% ferret_fans")
        await w.group("secret", "olga", privacy="hidden", join_policy="invite")
        for person in ("mia", "max"):
            await w.join("dogs", person)
        await w.join("ferrets", "mia")
        now = time.time()
        await w.post("olga", "cats", "latest", title="Latest", at=now)
        await w.post("olga", "dogs", "earlier", title="Earlier", at=now - HOUR)
        await w.post("olga", "ferrets", "members only", title="Hidden from the order",
                     visibility="members", at=now + 60)
        async with w.fedi.services.sessionmaker() as session, session.begin():
            for offset, name in enumerate(("cats", "dogs", "ferrets")):
                group = await find_local(session, name)
                assert group is not None
                await session.execute(update(Group).where(Group.actor_id == group.id)
                                      .values(created_at=now - 100 + offset))

        def names(text: str) -> list[str]:
            return re.findall(r'<span class="handle">@(\w+)@', text)

        assert names((await w.page(None, "/?sort=members")).text) == ["dogs", "ferrets", "cats"]
        assert names((await w.page(None, "/?sort=newest")).text) == ["ferrets", "dogs", "cats"]
        # Activity is the newest post anyone may see: the members-only one does not count.
        assert names((await w.page(None, "/?sort=activity")).text) == ["cats", "dogs", "ferrets"]
        assert names((await w.page(None, "/?q=WHISKERS")).text) == ["cats"]
        assert names((await w.page(None, "/?q=people")).text) == ["cats", "dogs"]
        assert names((await w.page(None, "/?q=%25")).text) == ["ferrets"]  # a literal %
        assert names((await w.page(None, "/?q=_")).text) == ["ferrets"]
        empty = await w.page(None, "/?q=zebras")
        assert names(empty.text) == [] and "No group matches" in empty.text
        assert names((await w.page(None, "/?q=secret")).text) == []  # hidden: never listed


async def test_a_thread_is_a_tree_with_depths_markers_and_permalinks(database_url: str) -> None:
    async with world(database_url) as (w, stack):
        await w.person("olga", stack)
        await w.person("mia", stack)
        await w.group("cats", "olga")
        await w.join("cats", "mia")
        now = time.time()
        root = await w.post("olga", "cats", "Hello", title="Hi",
                            at=now - 3 * HOUR - 60)
        chain = [root]
        for depth in range(1, 12):  # deeper than the page nests
            chain.append(await w.post("mia" if depth % 2 else "olga", "cats", f"depth {depth}",
                                      reply_to=chain[-1], at=now - 3 * HOUR + depth))
        side = await w.post("mia", "cats", "a second answer", reply_to=root, at=now - HOUR)
        gone = await w.post("mia", "cats", "soon removed", reply_to=root, at=now - HOUR + 1)
        await w.post("olga", "cats", "an answer to the removed one", reply_to=gone)
        await w.change(side, updated=now)
        await w.change(gone, deleted_at=now, held="removed", content="")
        await w.change(root, locked_at=now, content=sanitize_html(
            '<p>Hello <a href="https://example.com/a">example</a> <span class="h-card">'
            f'<a href="{w.fedi.settings.base_url}/users/mia" class="u-url mention">@mia</a>'
            '</span><a href="javascript:alert(1)">x</a></p>'))  # as a remote post is stored

        page = await w.page("mia", root.uri)
        text = page.text
        ids = shown(page)
        # Nested down to the limit (8 levels below the top), then a link to go on.
        assert ids[:9] == [p.id for p in chain[:9]]
        assert chain[9].id not in ids and chain[10].id not in ids
        assert f'href="{chain[8].uri}">Continue this thread (3 more replies)' in text
        assert text.count("<details open") >= 8
        # 11 in the chain + the second answer: the removed one and its answer are not counted.
        assert "<summary>12 replies</summary>" in text
        assert "Removed by a moderator" in text and "soon removed" not in text
        assert "an answer to the removed one" not in text
        assert '<span class="marker">edited</span>' not in text  # it has a title attribute
        assert re.search(r'<span class="marker" title="[^"]+">edited</span>', text)
        assert "locked: no new replies" in text
        assert f'id="p{side.id}"' in text and f'href="#p{side.id}"' in text
        assert f'href="{side.uri}" class="permalink"' in text
        assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[\d:]+Z" title="[^"]+">3 hours ago'
                         r'</time>', text)
        # Links and mentions in the sanitised body are links; script links are not.
        assert re.search(r'<a href="https://example.com/a"[^>]*>example</a>', text)
        assert re.search(rf'<a href="{w.fedi.settings.base_url}/users/mia"[^>]*>@mia</a>', text)
        assert "javascript:" not in text
        # A reply's permalink shows it and what is below it, nested from there.
        deep = await w.page("mia", chain[8].uri)
        assert shown(deep)[:3] == [chain[8].id, chain[9].id, chain[10].id]
        assert f'href="{root.uri}">the thread</a>' in deep.text

        listing = await w.page(None, "/groups/cats")
        assert "12 replies" in listing.text and "locked" in listing.text
