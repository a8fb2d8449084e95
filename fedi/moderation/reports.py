"""Reports: filed here by a member, or arriving as a remote `Flag`; forwarded; resolved.

- A report lands in the queue of the instance admins and, when a reported post is in a local
  group, of that group's moderators (`Report.group_id`).
- A remote Flag names actors and/or posts in `object`; only things we already hold count
  (nothing is fetched for a report). A domain with `reject_reports` is not heard.
- A report about remote content can be forwarded to the author's server as a `Flag` from
  the instance actor (Mastodon's form: the reporter stays anonymous), to the shared inbox.
- Resolving records the action and a note in the report and in the audit log. The action
  itself (a ban, a removal, a domain suspension) is carried out by the caller.
- Filing says which posts the report took past their group's report threshold (hidden now,
  `Filed.hidden`): their authors are told by fedi.federation.reporting, which the web, the
  CLI and the inbox call (groups.notices sits beside this package, not below it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import IncomingActivity, host_of, is_http_url
from fedi.activitypub.vocab import AS_CONTEXT, ids
from fedi.content import html_to_text
from fedi.delivery.enqueue import enqueue
from fedi.errors import ValidationError
from fedi.handlers import HandlerContext, Ignored
from fedi.moderation import audit
from fedi.moderation.policy import decision_in
from fedi.store.models import Actor, Follow, Group, Post, Report, now
from fedi.urls import Urls, new_id

ACTIONS = ("none", "ban", "remove", "suspend-domain")
MAX_COMMENT = 5000
MAX_OBJECTS = 50
REMOVED_MARK = "removed by a moderator"


@dataclass(frozen=True)
class Filed:
    """A report just filed, and the posts it hid (the group's report threshold reached)."""

    report: Report
    hidden: list[Post]


@dataclass(frozen=True)
class ReportView:
    report: Report
    target: Actor
    reporter: Actor | None
    group: Actor | None


async def _local_group_of(session: AsyncSession, post: Post) -> Actor | None:
    if post.group_id is None:
        return None
    group = await session.get(Actor, post.group_id)
    return group if group is not None and group.local else None


async def file_report(
    session: AsyncSession, reporter: Actor, post: Post, comment: str | None = None
) -> Filed:
    """A local member reports a post (to the group's moderators and the admins)."""
    group = await _local_group_of(session, post)
    report = Report(
        reporter_id=reporter.id, target_id=post.author_id, group_id=group.id if group else None,
        post_uris=json.dumps([post.uri]), comment=(comment or "").strip()[:MAX_COMMENT] or None,
        state="open", created_at=now(),
    )
    session.add(report)
    await session.flush()
    return Filed(report, await apply_threshold(session, report))


async def file_flag(ctx: HandlerContext, activity: IncomingActivity) -> Filed:
    """A remote server reports an account and/or posts we hold (raises Ignored when the
    Flag is not heard, or names nothing we hold)."""
    host = host_of(activity.actor)
    own = host_of(ctx.urls.base)
    decision = await decision_in(ctx.session, host, now(), own_domain=own)
    if decision.refused or decision.reject_reports:
        raise Ignored(f"refused: reports from {host} are rejected by this instance")
    session = ctx.session
    if (
        await session.execute(select(Report.id).where(Report.activity_uri == activity.id))
    ).first():
        raise Ignored("report already received")
    # Only http(s) URIs are looked up or kept (SECURITY 20), and the cap counts only those:
    # a Flag padded with `javascript:` entries cannot push out what it really names.
    named = [u for u in ids(activity.document.get("object")) if is_http_url(u)][:MAX_OBJECTS]
    if not named:
        raise Ignored("the Flag names no http(s) object")
    actors: list[Actor] = []
    posts: list[Post] = []
    copied_by: set[int] = set()  # groups whose own copy of a post the Flag names
    for uri in named:
        post = (await session.execute(select(Post).where(Post.uri == uri))).scalar_one_or_none()
        if post is None:
            # The group's followers-only copy of a members-only post: what a Mastodon member
            # sees, and reports, is the original post by its author.
            post = (
                await session.execute(select(Post).where(Post.copy_uri == uri))
            ).scalars().first()
            if post is not None and post.group_id is not None:
                copied_by.add(post.group_id)
        if post is not None:
            posts.append(post)
            continue
        actor = (await session.execute(select(Actor).where(Actor.uri == uri))).scalar_one_or_none()
        if actor is not None:
            actors.append(actor)
    # Mastodon names the copy's attributedTo (the group) as the account: not the one reported.
    actors = [a for a in actors if a.id not in copied_by]
    target = actors[0] if actors else None
    if target is None and posts:
        target = await session.get(Actor, posts[0].author_id)
    if target is None:
        raise Ignored("the Flag names nobody and nothing we hold")
    posts = [p for p in posts if p.author_id == target.id]
    group: Actor | None = None
    for post in posts:
        group = await _local_group_of(session, post)
        if group is not None:
            break
    if not target.local and group is None:
        raise Ignored("the Flag is about a remote account with no posts in our groups")
    reporter = await ctx.resolver.actor(session, activity.actor)
    content = activity.document.get("content")
    comment = html_to_text(content)[:MAX_COMMENT] if isinstance(content, str) else None
    report = Report(
        activity_uri=activity.id, reporter_id=reporter.id, target_id=target.id,
        group_id=group.id if group else None, post_uris=json.dumps([p.uri for p in posts]),
        comment=comment or None, state="open", created_at=now(),
    )
    session.add(report)
    await session.flush()
    hidden = await apply_threshold(session, report)
    ctx.outcome = f"report {report.id} filed"
    return Filed(report, hidden)


async def get_report(session: AsyncSession, report_id: int) -> Report:
    report = await session.get(Report, report_id)
    if report is None:
        raise ValidationError(f"there is no report {report_id}")
    return report


async def list_reports(
    session: AsyncSession, *, include_resolved: bool = False, group_id: int | None = None
) -> list[ReportView]:
    """Admins see every report; a group's moderators pass their group's id."""
    query = select(Report).order_by(Report.id)
    if not include_resolved:
        query = query.where(Report.state == "open")
    if group_id is not None:
        query = query.where(Report.group_id == group_id)
    views: list[ReportView] = []
    for report in (await session.execute(query)).scalars():
        target = await session.get(Actor, report.target_id)
        if target is None:
            continue
        reporter = await session.get(Actor, report.reporter_id) if report.reporter_id else None
        group = await session.get(Actor, report.group_id) if report.group_id else None
        views.append(ReportView(report, target, reporter, group))
    return views


def post_uris(report: Report) -> list[str]:
    loaded = json.loads(report.post_uris or "[]")
    return [u for u in loaded if is_http_url(u)] if isinstance(loaded, list) else []


async def forward_report(
    session: AsyncSession, urls: Urls, report: Report, *, who: str
) -> str:
    """Send the report to the reported account's server as a Flag from the instance actor;
    returns the inbox it goes to."""
    target = await session.get(Actor, report.target_id)
    if target is None or target.local:
        raise ValidationError(f"report {report.id} is about a local account; "
                              "there is no other server to tell")
    decision = await decision_in(session, target.domain, now(), own_domain=host_of(urls.base))
    if decision.refused:
        raise ValidationError(f"{target.domain} is not federated with: {decision.reason}")
    inbox = target.shared_inbox or target.inbox
    if inbox is None:
        raise ValidationError(f"{target.uri} has no inbox")
    instance = (
        await session.execute(select(Actor).where(Actor.uri == urls.instance_actor))
    ).scalar_one_or_none()
    if instance is None:
        raise ValidationError("the instance actor does not exist yet; run fedi migrate")
    # Only the target's own posts go to the target's server.
    own_posts = [u for u in post_uris(report) if host_of(u) == host_of(target.uri)]
    flag = {
        "@context": AS_CONTEXT, "id": urls.activity(new_id()), "type": "Flag",
        "actor": instance.uri, "object": [target.uri, *own_posts],
        "content": report.comment or "", "to": [target.uri],
    }
    await enqueue(session, instance, flag, [inbox])
    report.forwarded_at = now()
    await audit.record(
        session, who, "report.forward", f"report {report.id}", group_id=report.group_id,
        details={"target": target.uri, "inbox": inbox, "activity": flag["id"]},
    )
    return inbox


async def hide_reported_posts(session: AsyncSession, report: Report) -> int:
    """Take the reported posts down here (they stop being shown and served)."""
    removed = 0
    for uri in post_uris(report):
        post = (await session.execute(select(Post).where(Post.uri == uri))).scalar_one_or_none()
        if post is not None and post.deleted_at is None:
            post.deleted_at = now()
            post.held = REMOVED_MARK
            removed += 1
    return removed


async def resolve(
    session: AsyncSession, report: Report, *, action: str, note: str, who: str,
    resolved_by: int | None = None,
) -> None:
    """Close a report with the action taken and a note; audited."""
    if action not in ACTIONS:
        raise ValidationError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if not note.strip():
        raise ValidationError("a resolution needs a note saying why")
    if report.state == "resolved":
        raise ValidationError(f"report {report.id} was already resolved ({report.resolution})")
    target = await session.get(Actor, report.target_id)
    report.state = "resolved"
    report.resolution = action
    report.resolution_note = note.strip()
    report.resolved_by = resolved_by
    report.resolved_at = now()
    await audit.record(
        session, who, "report.resolve", f"report {report.id}", reason=note.strip(),
        group_id=report.group_id,
        details={"action": action, "target": target.uri if target else None,
                 "posts": post_uris(report)},
    )


async def apply_threshold(session: AsyncSession, report: Report) -> list[Post]:
    """Community moderation: once enough members have reported a post, it is hidden until
    a moderator looks at it (`fedi mod queue`). Returns the posts hidden now."""
    if report.group_id is None:
        return []
    config = await session.get(Group, report.group_id)
    if config is None or config.report_threshold <= 0:
        return []
    hidden: list[Post] = []
    open_reports = (
        await session.execute(
            select(Report).where(Report.group_id == report.group_id, Report.state == "open")
        )
    ).scalars().all()
    for uri in post_uris(report):
        reporters = {r.reporter_id for r in open_reports
                     if uri in post_uris(r) and r.reporter_id is not None}
        members = await _members_among(session, report.group_id, reporters)
        post = (await session.execute(select(Post).where(Post.uri == uri))).scalar_one_or_none()
        if post is not None and post.held is None and len(members) >= config.report_threshold:
            post.held = "reports"
            hidden.append(post)
            await audit.record(
                session, who="community (report threshold)", action="group.auto-hide",
                target=uri, reason=f"{len(members)} member reports", group_id=report.group_id,
            )
    return hidden


async def _members_among(session: AsyncSession, group_id: int, actor_ids: set[int]) -> set[int]:
    """Reports count when members (or moderators, or local users) made them."""
    if not actor_ids:
        return set()
    rows = await session.execute(
        select(Follow.follower_id).where(
            Follow.target_id == group_id, Follow.state == "accepted",
            Follow.follower_id.in_(actor_ids),
        )
    )
    members = set(rows.scalars())
    local = await session.execute(
        select(Actor.id).where(Actor.id.in_(actor_ids), Actor.local)
    )
    return members | set(local.scalars())
