"""A group's moderators' work that spans groups and moderation (reports): what their
dashboard reads (requests, the held queue, reports with the reported posts, members with
roles, bans, removed posts, domain blocks) and resolving a report about the group. The CLI
(`fedi mod`) and the moderators' pages call these."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.errors import ValidationError
from fedi.groups import moderation, modlog
from fedi.groups.moderation import RESTORABLE, JoinRequest, held_posts, pending
from fedi.groups.modlog import Moderator
from fedi.groups.threads import find_post
from fedi.moderation.reports import ReportView, list_reports, post_uris, resolve
from fedi.store.models import Actor, Follow, GroupBan, GroupDomainBlock, GroupRole, Post, Report
from fedi.urls import Urls

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
               Post.held.in_(RESTORABLE))
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


# What a group's moderators may do about a report, and the report's recorded resolution.
REPORT_ACTIONS = {"dismiss": "none", "remove": "remove", "ban": "ban"}


async def resolve_report(
    session: AsyncSession, urls: Urls, group: Actor, report_id: int, *, action: str,
    note: str, by: Moderator,
) -> Report:
    """Close a report about this group: remove the reported posts, ban their author, or
    dismiss it. The note is for moderators: it is not sent with a removal or a ban."""
    report = await session.get(Report, report_id)
    if report is None or report.group_id != group.id:
        raise ValidationError(f"there is no report {report_id} about {group.username}")
    if action not in REPORT_ACTIONS:
        raise ValidationError(f"action must be one of {', '.join(REPORT_ACTIONS)}")
    if not note.strip():
        raise ValidationError("a resolution needs a note saying why")
    if report.state != "open":
        raise ValidationError(f"report {report.id} was already resolved ({report.resolution})")
    target = await session.get(Actor, report.target_id)
    if target is None:
        raise ValidationError(f"report {report.id} names an account that no longer exists")
    if action == "remove":
        shown = [uri for uri in post_uris(report)
                 if (post := await find_post(session, uri)) is not None
                 and post.group_id == group.id and post.deleted_at is None]
        if not shown:
            raise ValidationError(f"report {report.id} names no post that is still shown")
        for uri in shown:
            await moderation.remove_post(session, urls, group, uri, None)
            await modlog.record(session, by, group, "remove", uri,
                                details={"report": report.id})
    elif action == "ban":
        await moderation.ban(session, urls, group, target, by=by.actor, reason=None)
        await modlog.record(session, by, group, "ban", target.uri, details={"report": report.id})
    await resolve(session, report, action=REPORT_ACTIONS[action], note=note, who=by.who,
                  resolved_by=by.actor.id if by.actor else None)
    return report
