"""A thread page draws a bounded number of replies (reading.REPLIES_PER_PAGE, at most
TOP_PER_PAGE of them direct); where replies are cut, a link goes on with them, and following
every link reaches each reply the viewer may see exactly once. The limits are made small
here so that a few posts fill a page."""

from __future__ import annotations

import html
import re

import pytest

from fedi.groups import reading
from fedi.store.models import Post
from tests.web.reading_world import World, shown, world

MORE = re.compile(r'<p class="meta more"><a href="([^"]+)">([^<]*)</a>')
FOCUS = re.compile(r'id="p(\d+)" aria-current="true"')
COUNT = re.compile(r"\((\d+) more repl(?:y|ies)\)")
SUMMARY = re.compile(r"<summary>(\d+) repl(?:y|ies)</summary>")


def limits(monkeypatch: pytest.MonkeyPatch, budget: int, top: int) -> None:
    monkeypatch.setattr(reading, "REPLIES_PER_PAGE", budget)
    monkeypatch.setattr(reading, "TOP_PER_PAGE", top)


async def crawl(w: World, who: str | None, start: str) -> tuple[list[int], list[str]]:
    """The replies drawn on every page reached from `start` by its "more" links (each page's
    own post left out: the page it was linked from drew it), and the pages' texts."""
    drawn: list[int] = []
    texts: list[str] = []
    todo, visited = [start], set()
    while todo:
        path = todo.pop(0)
        assert path not in visited, f"two links to {path}"
        visited.add(path)
        text = (await w.page(who, path)).text
        focus = FOCUS.search(text)
        assert focus is not None
        drawn += [i for i in shown(text) if i != int(focus.group(1))]
        texts.append(text)
        todo += [html.unescape(href) for href, _ in MORE.findall(text)]
    return drawn, texts


def accounted(text: str) -> tuple[int, int]:
    """The page's own reply count, and the replies it draws plus those its links promise."""
    summary = SUMMARY.search(text)
    assert summary is not None
    focus = FOCUS.search(text)
    assert focus is not None
    drawn = [i for i in shown(text) if i != int(focus.group(1))]
    promised = sum(int(n) for _, label in MORE.findall(text) for n in COUNT.findall(label))
    return int(summary.group(1)), len(drawn) + promised


async def test_a_long_thread_is_paged_and_its_links_reach_every_reply_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits(monkeypatch, budget=5, top=3)
    async with world(database_url) as (w, stack):
        await w.person("olga", stack)
        await w.group("cats", "olga")
        root = await w.post("olga", "cats", "the question", title="Q")
        top = [await w.post("olga", "cats", f"answer {k}", reply_to=root) for k in range(1, 8)]
        wide = [await w.post("olga", "cats", f"wide {k}", reply_to=top[0]) for k in range(4)]
        below = await w.post("olga", "cats", "below wide 0", reply_to=wide[0])
        chain: list[Post] = [top[1]]
        for k in range(3):
            chain.append(await w.post("olga", "cats", f"chain {k}", reply_to=chain[-1]))
        late = await w.post("olga", "cats", "under answer 4", reply_to=top[3])
        replies = [*top, *wide, below, *chain[1:], late]

        first = (await w.page(None, root.uri)).text
        ids = shown(first)
        # Three direct replies, five replies in all, breadth first.
        assert ids == [root.id, top[0].id, wide[0].id, wide[1].id, top[1].id, top[2].id]
        assert f'href="{root.uri}?after={top[2].id}">Next replies (5 more replies) →' in first
        assert f'href="{top[0].uri}?after={wide[1].id}">More replies (2 more replies) →' in first
        assert f'href="{top[1].uri}">Continue this thread (3 more replies)' in first
        assert f'href="{wide[0].uri}">Continue this thread (1 more reply)' in first
        assert "back to the first" not in first
        assert accounted(first) == (len(replies), len(replies))

        drawn, texts = await crawl(w, None, root.uri)
        assert sorted(drawn) == sorted(p.id for p in replies)  # each exactly once
        assert len(texts) == 6
        for text in texts:
            focus = FOCUS.search(text)
            assert focus is not None
            assert len(shown(text)) - 1 <= 5
        later = (await w.page(None, f"{root.uri}?after={top[2].id}")).text
        assert shown(later) == [root.id, top[3].id, late.id, top[4].id, top[5].id]
        assert f'<a href="{root.uri}">back to the first</a>' in later
        assert f'href="{root.uri}?after={top[5].id}">Next replies (1 more reply) →' in later


async def test_a_members_only_reply_is_neither_shown_nor_counted_on_any_page(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits(monkeypatch, budget=3, top=2)
    async with world(database_url) as (w, stack):
        await w.person("olga", stack)
        await w.person("mia", stack)
        await w.group("cats", "olga")
        await w.join("cats", "mia")
        root = await w.post("olga", "cats", "open to all", title="Open")
        first = await w.post("olga", "cats", "a public answer", reply_to=root)
        ours = await w.post("mia", "cats", "only for members", reply_to=root,
                            visibility="members")
        under = await w.post("olga", "cats", "under the members-only one", reply_to=ours)
        hidden = await w.post("mia", "cats", "members only, deeper", reply_to=first,
                              visibility="members")
        public = [first,
                  await w.post("olga", "cats", "public, deeper", reply_to=first),
                  await w.post("olga", "cats", "second public answer", reply_to=root),
                  await w.post("olga", "cats", "third public answer", reply_to=root)]
        everyone = [*public, ours, under, hidden]

        drawn, texts = await crawl(w, None, root.uri)
        assert sorted(drawn) == sorted(p.id for p in public)
        for text in texts:
            for secret in (ours, under, hidden):
                assert f'id="p{secret.id}"' not in text and secret.uri not in text
            assert "only for members" not in text and "members only, deeper" not in text
            assert "under the members-only one" not in text
            assert accounted(text)[1] <= len(public)
        assert accounted(texts[0]) == (len(public), len(public))

        drawn, texts = await crawl(w, "mia", root.uri)
        assert sorted(drawn) == sorted(p.id for p in everyone)
        assert accounted(texts[0]) == (len(everyone), len(everyone))


async def test_a_deep_chain_is_cut_with_a_link_that_continues_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits(monkeypatch, budget=4, top=4)
    async with world(database_url) as (w, stack):
        await w.person("olga", stack)
        await w.group("cats", "olga")
        chain = [await w.post("olga", "cats", "the start", title="Deep")]
        for depth in range(1, 7):
            chain.append(await w.post("olga", "cats", f"depth {depth}", reply_to=chain[-1]))
        first = (await w.page(None, chain[0].uri)).text
        assert shown(first) == [p.id for p in chain[:5]]
        assert f'href="{chain[4].uri}">Continue this thread (2 more replies)' in first
        went_on = (await w.page(None, chain[4].uri)).text
        assert shown(went_on) == [p.id for p in chain[4:]]
        assert FOCUS.search(went_on) is not None
        drawn, _ = await crawl(w, None, chain[0].uri)
        assert drawn == [p.id for p in chain[1:]]

        # Deeper than the page nests (NEST_LIMIT) with room to spare: cut there, continued.
        limits(monkeypatch, budget=200, top=100)
        for depth in range(7, 12):
            chain.append(await w.post("olga", "cats", f"depth {depth}", reply_to=chain[-1]))
        first = (await w.page(None, chain[0].uri)).text
        assert shown(first) == [p.id for p in chain[:reading.NEST_LIMIT + 1]]
        assert f'href="{chain[8].uri}">Continue this thread (3 more replies)' in first
        drawn, _ = await crawl(w, None, chain[0].uri)
        assert drawn == [p.id for p in chain[1:]]


async def test_a_replys_permalink_shows_it_when_it_is_beyond_the_first_page(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits(monkeypatch, budget=200, top=2)
    async with world(database_url) as (w, stack):
        await w.person("olga", stack)
        await w.group("cats", "olga")
        root = await w.post("olga", "cats", "the question", title="Q")
        answers = [await w.post("olga", "cats", f"answer {k}", reply_to=root) for k in range(3)]
        under = await w.post("olga", "cats", "under the third answer", reply_to=answers[2])
        first = (await w.page(None, root.uri)).text
        assert answers[2].id not in shown(first) and under.id not in shown(first)
        own = (await w.page(None, answers[2].uri)).text
        assert shown(own) == [answers[2].id, under.id]
        assert f'id="p{answers[2].id}" aria-current="true"' in own
        assert f'a reply in <a href="{root.uri}">the thread</a>' in own
        # Live updates resume after the thread's newest reply, drawn on this page or not:
        # one on a later page is not sent to this one as new.
        assert f'data-live="/live/threads/{root.id}?after={under.id}"' in first


async def test_a_later_page_of_a_cursor_that_is_gone_goes_on_after_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits(monkeypatch, budget=200, top=2)
    async with world(database_url) as (w, stack):
        await w.person("olga", stack)
        await w.group("cats", "olga")
        root = await w.post("olga", "cats", "the question", title="Q")
        answers = [await w.post("olga", "cats", f"answer {k}", reply_to=root) for k in range(4)]
        await w.change(answers[1], visibility="members")  # the cursor no one here sees now
        later = (await w.page(None, f"{root.uri}?after={answers[1].id}")).text
        assert shown(later) == [root.id, answers[2].id, answers[3].id]
        assert (await w.fedi.http.get(f"{root.uri}?after=x{answers[1].id}",
                                      headers={"Accept": "text/html"})).status_code == 200
