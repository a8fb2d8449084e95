"""The "active" and "new" sorts read a group's threads by index (a window of the newest posts,
the pinned ones apart): they must give exactly the order of ranking every thread, on every
page, with ties, held and removed posts, pinned threads and several groups."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import insert

from fedi.actors.local import create_group, create_user
from fedi.groups import reading
from fedi.groups.reading import ThreadSort
from fedi.store.models import Actor, Post
from tests.accounts.support import app
from tests.support.app import InProcess

VISIBLE = Post.deleted_at.is_(None)  # what a moderator's listing starts from


def _world(rng: random.Random, groups: list[int], author: int, first_id: int, spread: int
           ) -> list[dict[str, Any]]:
    """Threads with replies at `spread` distinct times (few: many ties), some held, removed
    or pinned."""
    rows: list[dict[str, Any]] = []
    next_id = first_id
    for _ in range(60):
        group = rng.choice(groups)
        root_at = float(rng.randrange(spread))
        root = {"id": next_id, "group_id": group, "thread_id": next_id, "in_reply_to": None,
                "published": root_at,
                "held": "premoderation" if rng.random() < 0.1 else None,
                "deleted_at": 1.0 if rng.random() < 0.05 else None,
                "pinned_at": 1.0 if rng.random() < 0.08 else None}
        rows.append(root)
        next_id += 1
        for _ in range(rng.randrange(4)):
            rows.append({"id": next_id, "group_id": group, "thread_id": root["id"],
                         "in_reply_to": f"https://x.example/p/{root['id']}",
                         "published": root_at + rng.randrange(spread),
                         "held": "premoderation" if rng.random() < 0.2 else None,
                         "deleted_at": 1.0 if rng.random() < 0.1 else None,
                         "pinned_at": None})
            next_id += 1
    return [{**r, "uri": f"https://x.example/p/{r['id']}", "author_id": author,
             "local": True, "content": "<p>x</p>", "visibility": "public",
             "reply_policy": "members", "document": "{}", "name": None} for r in rows]


def _expected(rows: list[dict[str, Any]], groups: set[int], pinned_first: bool) -> list[int]:
    """Every thread ranked in Python: pinned first (when asked), then newest activity (a post
    neither removed nor held, or the thread's own first post), then the larger id."""
    activity: dict[int, float] = {}
    for r in rows:
        if r["deleted_at"] is None and (r["held"] is None or r["id"] == r["thread_id"]):
            activity[r["thread_id"]] = max(activity.get(r["thread_id"], r["published"]),
                                           r["published"])
    roots = [r for r in rows if r["id"] == r["thread_id"] and r["group_id"] in groups
             and r["deleted_at"] is None]
    return [r["id"] for r in sorted(roots, key=lambda r: (
        pinned_first and r["pinned_at"] is None, -activity[r["id"]], -r["id"]))]


async def _seeded(fedi: InProcess, names: list[str], seed: int, spread: int
                  ) -> tuple[list[int], list[dict[str, Any]]]:
    """Groups of these names owned by olga, and a random world of her threads in them."""
    urls = fedi.services.urls
    async with fedi.services.sessionmaker() as session, session.begin():
        author = await create_user(session, urls, "olga")
        groups = [await create_group(session, urls, name, owner="olga") for name in names]
        await session.flush()
        author_id, ids = author.id, [g.id for g in groups]
    rows = _world(random.Random(seed), ids, author_id, 1000, spread)
    async with fedi.services.sessionmaker() as session, session.begin():
        await session.execute(insert(Post), rows)
    return ids, rows


@pytest.mark.parametrize("spread", [3, 40])
async def test_the_windowed_active_order_is_the_full_ranking_on_every_page(
    database_url: str, spread: int,
) -> None:
    async with app(database_url) as fedi:
        (cats_id, dogs_id), rows = await _seeded(fedi, ["cats", "dogs"], 13, spread)

        for groups in ([cats_id], [cats_id, dogs_id]):
            expected = _expected(rows, set(groups), pinned_first=False)
            assert len(expected) > 20
            async with fedi.services.sessionmaker() as session:
                for window in (0, 1, 2, 3, 7, 256):  # 0: the database ranks every thread
                    for start in range(0, len(expected) + 2, 3):
                        for count in (1, 4, 26):
                            got = await reading._active_ids(
                                session, groups, VISIBLE, start, count, window=window)
                            assert got == expected[start:start + count], (
                                groups, window, start, count)


@pytest.mark.parametrize("spread", [3, 40])
async def test_pinned_threads_come_first_in_new_and_active_on_every_page(
    database_url: str, spread: int,
) -> None:
    async with app(database_url) as fedi:
        (cats_id,), rows = await _seeded(fedi, ["cats"], 5, spread)
        assert any(r["pinned_at"] for r in rows)
        active = _expected(rows, {cats_id}, pinned_first=True)
        roots = [r for r in rows if r["id"] == r["thread_id"] and r["deleted_at"] is None]
        new = [r["id"] for r in sorted(roots, key=lambda r: (
            r["pinned_at"] is None, -r["published"], -r["id"]))]
        async with fedi.services.sessionmaker() as session:
            group = await session.get(Actor, cats_id)
            assert group is not None
            for sort, expected in ((ThreadSort.ACTIVE, active), (ThreadSort.NEW, new)):
                for start in range(0, len(expected) + 2, 2):
                    for count in (1, 3, 26):
                        got = await reading._pinned_first(
                            session, group, VISIBLE, sort, start, count)
                        assert got == expected[start:start + count], (sort, start, count)
