"""What a group's moderators read on their dashboard: requests, the held queue, reports with
the reported posts, members with roles, bans, removed posts, domain blocks."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.groups.moderation import JoinRequest, held_posts, pending
from fedi.groups.threads import find_post
from fedi.moderation.reports import REMOVED_MARK, ReportView, list_reports, post_uris
from fedi.store.models import Actor, Follow, GroupBan, GroupDomainBlock, GroupRole, Post

MAX_LISTED = 200


@dataclass(frozen=True)
class ReportCase:
    view: ReportView
    posts: list[Post]  # the reported posts this server holds, in this group


@dataclass(frozen=True)
class Dashboard:
    requests: list[JoinRequest]
    held: list[tuple[Post, Actor]]
    reports: list[ReportCase]
    members: list[tuple[Actor, str]]  # role: owner | moderator | member
    bans: list[tuple[GroupBan, Actor]]
    removed: list[tuple[Post, Actor]]
    domain_blocks: list[GroupDomainBlock]


async def _members(session: AsyncSession, group: Actor) -> list[tuple[Actor, str]]:
    roles = {actor_id: role for actor_id, role in (await session.execute(
        select(GroupRole.actor_id, GroupRole.role).where(GroupRole.group_id == group.id)
    )).all()}
    rows = await session.execute(
        select(Actor).where(or_(
            Actor.id.in_(roles),
            Actor.id.in_(select(Follow.follower_id).where(
                Follow.target_id == group.id, Follow.state == "accepted")),
        )).order_by(Actor.username).limit(MAX_LISTED)
    )
    order = {"owner": 0, "moderator": 1, "member": 2}
    found = [(actor, roles.get(actor.id, "member")) for actor in rows.scalars()]
    return sorted(found, key=lambda pair: order[pair[1]])


async def load(session: AsyncSession, group: Actor) -> Dashboard:
    cases = []
    for view in await list_reports(session, group_id=group.id):
        posts = [p for uri in post_uris(view.report)
                 if (p := await find_post(session, uri)) is not None and p.group_id == group.id]
        cases.append(ReportCase(view, posts))
    bans = await session.execute(
        select(GroupBan, Actor).join(Actor, Actor.id == GroupBan.actor_id)
        .where(GroupBan.group_id == group.id).order_by(GroupBan.created_at.desc())
    )
    removed = await session.execute(
        select(Post, Actor).join(Actor, Actor.id == Post.author_id)
        .where(Post.group_id == group.id, Post.deleted_at.is_not(None),
               Post.held.in_(("removed", REMOVED_MARK)))
        .order_by(Post.deleted_at.desc()).limit(MAX_LISTED)
    )
    blocks = await session.execute(
        select(GroupDomainBlock).where(GroupDomainBlock.group_id == group.id)
        .order_by(GroupDomainBlock.domain)
    )
    return Dashboard(
        requests=await pending(session, group), held=await held_posts(session, group),
        reports=cases, members=await _members(session, group),
        bans=[(b, a) for b, a in bans.all()], removed=[(p, a) for p, a in removed.all()],
        domain_blocks=list(blocks.scalars()),
    )
