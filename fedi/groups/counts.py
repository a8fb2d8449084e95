"""Counts anyone may read (NodeInfo, pages): counts of what an anonymous visitor may see.

The privacy gate (fedi.privacy.access.can_view) answers for one post at a time; counting a
whole instance that way would load every post. For the anonymous viewer the gate reduces to
facts stored on the post itself and its parent chain: not deleted, not held, a visibility
open to anyone, and a parent (when we have it) that is itself visible. `anonymously_visible`
is that reduction as one recursive query; tests compare it with the gate post by post.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import CTE

from fedi.privacy.visibility import Visibility
from fedi.store.models import Post

OPEN_TO_ANYONE = [v.value for v in Visibility if v.open_to_anyone]


def _own_facts_open(post: Any) -> ColumnElement[bool]:
    """What can_view asks of the post itself, for a viewer who is nobody in particular."""
    return and_(
        post.deleted_at.is_(None), post.held.is_(None), post.visibility.in_(OPEN_TO_ANYONE)
    )


def anonymously_visible() -> CTE:
    """Ids of the posts an anonymous visitor may see (a recursive CTE with column `id`)."""
    parent = aliased(Post)
    roots = select(Post.id, Post.uri).where(
        _own_facts_open(Post),
        or_(Post.in_reply_to.is_(None),
            ~exists().where(parent.uri == Post.in_reply_to)),  # parent unknown here
    )
    visible = roots.cte("anonymously_visible", recursive=True)
    child = aliased(Post)
    return visible.union_all(
        select(child.id, child.uri)
        .join(visible, child.in_reply_to == visible.c.uri)
        .where(_own_facts_open(child))
    )


async def count_visible(session: AsyncSession, *conditions: ColumnElement[bool]) -> int:
    """How many posts matching `conditions` an anonymous visitor may see."""
    visible = anonymously_visible()
    query = (
        select(func.count()).select_from(Post)
        .join(visible, visible.c.id == Post.id).where(*conditions)
    )
    return int((await session.execute(query)).scalar_one())


async def visible_replies(session: AsyncSession, uris: list[str]) -> dict[str, int]:
    """Direct replies an anonymous visitor may see, per parent post uri."""
    if not uris:
        return {}
    visible = anonymously_visible()
    rows = await session.execute(
        select(Post.in_reply_to, func.count()).join(visible, visible.c.id == Post.id)
        .where(Post.in_reply_to.in_(uris)).group_by(Post.in_reply_to)
    )
    return {uri: int(n) for uri, n in rows.all() if uri is not None}
