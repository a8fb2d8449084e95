"""A post's like count, changed in the database itself.

Votes on one post arrive at once from the web, the client API and remote servers, handled by
different processes. Adding to the count read into Python would lose one of two concurrent
votes (each writes what it read plus one); the UPDATE adds to what is in the row when it runs.
"""

from __future__ import annotations

from sqlalchemy import case, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from fedi.store.models import Post


async def add_likes(session: AsyncSession, post: Post, delta: int) -> None:
    """Add `delta` (1 or -1) to the post's like count, never below zero; `post` shows the
    new count."""
    changed = Post.like_count + delta
    count = (await session.execute(
        update(Post).where(Post.id == post.id)
        .values(like_count=case((changed < 0, 0), else_=changed))
        .returning(Post.like_count)
        .execution_options(synchronize_session=False)
    )).scalar_one()
    set_committed_value(post, "like_count", count)
