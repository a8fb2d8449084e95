"""A post's like count, changed in the database itself.

Votes on one post arrive at once from the web, the client API and remote servers, handled by
different processes. Adding to the count read into Python would lose one of two concurrent
votes (each writes what it read plus one); the UPDATE adds to what is in the row when it runs.

In the inbox processor's batch the changes are summed per post and written when the batch
ends, one UPDATE per post rather than one per Like (bench.processing), in the order of the
posts' ids, so two workers never wait on each other's rows in opposite orders.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Integer, Table, bindparam, case, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from fedi.store.memo import memo_of
from fedi.store.models import Post

_POSTS = cast(Table, Post.__table__)
# On the table, not the ORM entity (whose bulk UPDATE path costs more than the statement),
# and built once (bench.processing: every Like).
_CHANGED = _POSTS.c.like_count + bindparam("delta", type_=Integer)
_ADD = update(_POSTS).where(_POSTS.c.id == bindparam("post_id")).values(
    like_count=case((_CHANGED < 0, 0), else_=_CHANGED))
_ADD_LIKES = _ADD.returning(_POSTS.c.like_count)


async def add_likes(session: AsyncSession, post: Post, delta: int) -> None:
    """Add `delta` (1 or -1) to the post's like count, never below zero; `post` shows the
    new count."""
    memo = memo_of(session)
    if memo is not None and memo.defers_writes:
        pending = memo.deferred(_KEY, _write_pending)
        pending[post.id] = pending.get(post.id, 0) + delta
        shown = post.__dict__.get("like_count")  # never a load: it may be expired
        if isinstance(shown, int):
            set_committed_value(post, "like_count", max(0, shown + delta))
        return
    count = (await session.execute(_ADD_LIKES, {"post_id": post.id, "delta": delta})).scalar_one()
    set_committed_value(post, "like_count", count)


_KEY = "fedi.groups.likes"


async def _write_pending(session: AsyncSession, pending: dict[int, int]) -> None:
    rows = [{"post_id": post_id, "delta": delta}
            for post_id, delta in sorted(pending.items()) if delta]
    if rows:
        await session.execute(_ADD, rows)
