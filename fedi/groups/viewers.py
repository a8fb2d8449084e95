"""Facts for the privacy gate, read from the database: who a viewer is, what a post is."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.groups.roles import roster
from fedi.privacy.access import PostFacts, Viewer
from fedi.privacy.visibility import ReplyPolicy, Visibility
from fedi.store.memo import memo_of, remembered
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
    return (await viewers_for(session, [actor], blocked=blocked))[actor.id]


async def viewer_within(
    session: AsyncSession, facts: PostFacts, group: Actor, actor_uri: str
) -> Viewer:
    """viewer_for as far as the gate asks about a post of `group` (`facts`): the gate asks a
    viewer only about the groups of the post and of what it answers. In an inbox batch,
    when those are `group` alone, this comes from the group's roster, read once per batch."""
    chain: PostFacts | None = facts
    while chain is not None and chain.group in (group.uri, None):
        chain = chain.parent
    if chain is not None or memo_of(session) is None:
        return await viewer_for(session, actor_uri)
    return (await roster(session, group)).viewer(actor_uri)


# Built once: an alias is a new Table of new Columns (reference cycles the collector would
# free after every request).
_GROUPS = Actor.__table__.alias("g")


async def viewers_for(
    session: AsyncSession, actors: Sequence[Actor], *, blocked: bool = False
) -> dict[int, Viewer]:
    """viewer_for of many actors at once (by actor id), in three queries whatever their
    number: what a live stream asks for every client when an event comes."""
    ids = list({a.id for a in actors})
    found: dict[str, dict[int, set[str]]] = {"member": {}, "moderator": {}, "banned": {}}
    if ids:
        groups = _GROUPS
        queries = {
            "member": select(Follow.follower_id, groups.c.uri).select_from(groups)
            .join(Follow, Follow.target_id == groups.c.id)
            .where(Follow.follower_id.in_(ids), Follow.state == "accepted"),
            "moderator": select(GroupRole.actor_id, groups.c.uri).select_from(groups)
            .join(GroupRole, GroupRole.group_id == groups.c.id)
            .where(GroupRole.actor_id.in_(ids)),
            "banned": select(GroupBan.actor_id, groups.c.uri).select_from(groups)
            .join(GroupBan, GroupBan.group_id == groups.c.id)
            .where(GroupBan.actor_id.in_(ids)),
        }
        for name, query in queries.items():
            for actor_id, uri in (await session.execute(query)).all():
                found[name].setdefault(actor_id, set()).add(uri)
    return {
        a.id: Viewer(
            actor=a.uri,
            member_of=frozenset(found["member"].get(a.id, ())),
            moderator_of=frozenset(found["moderator"].get(a.id, ())),
            banned_from=frozenset(found["banned"].get(a.id, ())),
            blocked=blocked,
        )
        for a in actors
    }


async def _named(session: AsyncSession, post_id: int) -> frozenset[str]:
    async def load() -> frozenset[str]:
        return frozenset((await session.execute(_NAMED, {"post_id": post_id})).scalars())

    return await remembered(session, ("named", post_id), _NAMED_TABLES, load)


def names_nobody_yet(session: AsyncSession, post_id: int) -> None:
    """A post just stored in this transaction names nobody until its audience rows are
    written (which drops this): a batch need not ask (bench.processing, every new post)."""
    memo = memo_of(session)
    if memo is not None:
        memo.put(("named", post_id), frozenset(), _NAMED_TABLES)


_NAMED_TABLES = frozenset({"post_audience", "actors"})
# Built once, as the parent lookup below: every relayed post and reaction asks them.
_NAMED = (select(Actor.uri).join(PostAudience, PostAudience.actor_id == Actor.id)
          .where(PostAudience.post_id == bindparam("post_id")))
_POST_BY_URI = select(Post).where(Post.uri == bindparam("uri"))


async def facts_for(session: AsyncSession, post: Post, depth: int = 0) -> PostFacts:
    author = await session.get(Actor, post.author_id)
    group = await session.get(Actor, post.group_id) if post.group_id else None
    visibility = Visibility(post.visibility)
    # The named people: who may see a mentioned/circle post, and who may answer under the
    # `mentioned` reply rule whatever the visibility.
    audience = await _named(session, post.id)
    parent: PostFacts | None = None
    if post.in_reply_to and depth < MAX_DEPTH:
        parent_post = (
            await session.execute(_POST_BY_URI, {"uri": post.in_reply_to})
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
