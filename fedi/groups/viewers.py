"""Facts for the privacy gate, read from the database: who a viewer is, what a post is."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.privacy.access import PostFacts, Viewer
from fedi.privacy.visibility import ReplyPolicy, Visibility
from fedi.store.models import Actor, Follow, GroupBan, GroupRole, Post, PostAudience

MAX_DEPTH = 64


async def viewer_for(
    session: AsyncSession, actor_uri: str | None, *, blocked: bool = False
) -> Viewer:
    if actor_uri is None:
        return Viewer(blocked=blocked)
    actor = (
        await session.execute(select(Actor).where(Actor.uri == actor_uri))
    ).scalar_one_or_none()
    if actor is None:
        return Viewer(actor=actor_uri, blocked=blocked)
    groups = Actor.__table__.alias("g")
    member_of = await session.execute(
        select(groups.c.uri).join(Follow, Follow.target_id == groups.c.id)
        .where(Follow.follower_id == actor.id, Follow.state == "accepted")
    )
    moderator_of = await session.execute(
        select(groups.c.uri).join(GroupRole, GroupRole.group_id == groups.c.id)
        .where(GroupRole.actor_id == actor.id)
    )
    banned_from = await session.execute(
        select(groups.c.uri).join(GroupBan, GroupBan.group_id == groups.c.id)
        .where(GroupBan.actor_id == actor.id)
    )
    return Viewer(
        actor=actor.uri,
        member_of=frozenset(member_of.scalars()),
        moderator_of=frozenset(moderator_of.scalars()),
        banned_from=frozenset(banned_from.scalars()),
        blocked=blocked,
    )


async def facts_for(session: AsyncSession, post: Post, depth: int = 0) -> PostFacts:
    author = await session.get(Actor, post.author_id)
    group = await session.get(Actor, post.group_id) if post.group_id else None
    visibility = Visibility(post.visibility)
    # The named people: who may see a mentioned/circle post, and who may answer under the
    # `mentioned` reply rule whatever the visibility.
    audience = frozenset(
        (
            await session.execute(
                select(Actor.uri).join(PostAudience, PostAudience.actor_id == Actor.id)
                .where(PostAudience.post_id == post.id)
            )
        ).scalars()
    )
    parent: PostFacts | None = None
    if post.in_reply_to and depth < MAX_DEPTH:
        parent_post = (
            await session.execute(select(Post).where(Post.uri == post.in_reply_to))
        ).scalar_one_or_none()
        if parent_post is not None:
            parent = await facts_for(session, parent_post, depth + 1)
    return PostFacts(
        author=author.uri if author else "",
        group=group.uri if group else None,
        visibility=visibility,
        audience=audience,
        reply_policy=ReplyPolicy(post.reply_policy),
        held=post.held is not None,
        deleted=post.deleted_at is not None,
        parent=parent,
    )
