"""Reports, and what they set off beyond the report: a post that members' reports take past
its group's threshold is hidden (moderation.reports decides) and its author is told, as a
post held by premoderation tells them (groups.notices records it, `post_held`).

moderation and groups sit side by side and may not import each other, so the two halves
meet here, above both: the web's report form, `fedi report`, the client API and the inbox's
Flag handler all file reports through this module, in the caller's transaction.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.parse import IncomingActivity
from fedi.groups import notices
from fedi.handlers import HandlerContext
from fedi.moderation import reports
from fedi.store.models import Actor, Post, Report


async def report_post(
    session: AsyncSession, reporter: Actor, post: Post, comment: str | None = None
) -> Report:
    """A local person reports a post (to the group's moderators and the admins)."""
    filed = await reports.file_report(session, reporter, post, comment)
    await _tell_authors(session, filed)
    return filed.report


async def handle_flag(ctx: HandlerContext, activity: IncomingActivity) -> None:
    """A remote server reports an account and/or posts we hold (the inbox's Flag)."""
    await _tell_authors(ctx.session, await reports.file_flag(ctx, activity))


async def _tell_authors(session: AsyncSession, filed: reports.Filed) -> None:
    for post in filed.hidden:
        await notices.post_held(session, post)
