"""The counting query (fedi.groups.counts) is the privacy gate's answer for an anonymous
visitor, post by post: compared on every combination of the facts it reads, in chains."""

from __future__ import annotations

import itertools

from sqlalchemy import select

from fedi.actors.local import create_group, create_user
from fedi.groups.counts import anonymously_visible, count_visible, visible_replies
from fedi.groups.viewers import facts_for
from fedi.privacy.access import ANONYMOUS, can_view
from fedi.privacy.visibility import Visibility
from fedi.store.models import Post
from tests.support.app import BASE_URL, running_app

OWN = list(itertools.product(list(Visibility), [False, True], [False, True]))  # vis, held, del


async def test_the_counting_query_agrees_with_the_gate(database_url: str) -> None:
    async with running_app(database_url) as fedi:
        async with fedi.services.sessionmaker() as session, session.begin():
            author = await create_user(session, fedi.services.urls, "owner")
            group = await create_group(session, fedi.services.urls, "cats", owner="owner")
            posts: list[Post] = []

            def add(n: int, parent: str | None, vis: Visibility, held: bool, gone: bool) -> Post:
                post = Post(
                    uri=f"{BASE_URL}/posts/p{n}", author_id=author.id, group_id=group.id,
                    in_reply_to=parent, visibility=vis.value, local=True,
                    held="reports" if held else None, deleted_at=1.0 if gone else None,
                    document="{}",
                )
                session.add(post)
                posts.append(post)
                return post

            n = 0
            # Every own-facts combination as a root, as a reply to a visible root, as a reply
            # to each kind of root, two levels down, and under a parent we do not have.
            for vis, held, gone in OWN:
                n += 1
                add(n, None, vis, held, gone)
                n += 1
                add(n, f"{BASE_URL}/posts/unknown{n}", vis, held, gone)
            for (pvis, pheld, pgone), (vis, held, gone) in itertools.product(OWN, OWN):
                n += 1
                parent = add(n, None, pvis, pheld, pgone)
                n += 1
                middle = add(n, parent.uri, Visibility.PUBLIC, False, False)
                n += 1
                add(n, middle.uri, vis, held, gone)
            await session.flush()

            by_gate = {p.id for p in posts if can_view(await facts_for(session, p), ANONYMOUS)}
            visible = anonymously_visible()
            by_query = set((await session.execute(select(visible.c.id))).scalars())
            assert by_query == by_gate
            assert 0 < len(by_gate) < len(posts)
            assert await count_visible(session, Post.local.is_(True)) == len(by_gate)
            replies = await visible_replies(session, [p.uri for p in posts])
            for post in posts:
                expected = sum(1 for p in posts if p.in_reply_to == post.uri and p.id in by_gate)
                assert replies.get(post.uri, 0) == expected
