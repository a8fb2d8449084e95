"""Two votes on one post at once (the web and the worker, or two processes) both count: the
like count is added to in the database, not rewritten from what each had read."""

from __future__ import annotations

from fedi.groups.reactions import vote
from fedi.store.models import Post
from tests.api.support import api_app, join_group, make_group, make_user, write_post


async def test_votes_read_before_either_commits_are_both_counted(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        urls = fedi.services.urls
        await make_user(fedi, "owner")
        cats = await make_group(fedi, "cats", "owner")
        for name in ("bob", "alice", "carol"):
            await join_group(fedi, name, cats)
        thread = await write_post(fedi, "bob", cats, "my thread")
        alice, carol = await make_user(fedi, "alice"), await make_user(fedi, "carol")

        first = fedi.services.sessionmaker()
        second = fedi.services.sessionmaker()
        async with first, second:
            # Both have read the post (count 0) before either vote is written.
            seen_first = await first.get(Post, thread.id)
            seen_second = await second.get(Post, thread.id)
            assert seen_first is not None and seen_second is not None
            assert seen_first.like_count == seen_second.like_count == 0
            assert await vote(first, urls, await first.merge(alice), seen_first)
            await first.commit()
            assert await vote(second, urls, await second.merge(carol), seen_second)
            assert seen_second.like_count == 2  # the object shows the row's count
            await second.commit()

        async with fedi.services.sessionmaker() as session:
            stored = await session.get(Post, thread.id)
            assert stored is not None and stored.like_count == 2

        async with fedi.services.sessionmaker() as session, session.begin():
            post = await session.get(Post, thread.id)
            assert post is not None
            assert not await vote(session, urls, await session.merge(alice), post)  # taken back
            assert post.like_count == 1
        async with fedi.services.sessionmaker() as session:
            stored = await session.get(Post, thread.id)
            assert stored is not None and stored.like_count == 1
