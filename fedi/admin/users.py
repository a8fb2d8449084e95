"""Local users for admins: list and search, suspend, delete with their content, reset a
password, make or unmake an admin."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts import login, recovery, suspension
from fedi.admin.acting import Admin
from fedi.errors import ValidationError
from fedi.groups.posting import delete_post
from fedi.moderation import audit
from fedi.store.models import Account, Actor, Post, User, now
from fedi.urls import Urls

MAX_LISTED = 200
MAX_REASON = 1000


@dataclass(frozen=True)
class UserRow:
    actor: Actor
    is_admin: bool
    approved: bool
    email: str | None
    suspended: suspension.Suspension | None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


async def list_users(session: AsyncSession, search: str = "",
                     limit: int = MAX_LISTED) -> list[UserRow]:
    """Local people, by name; `search` matches the user name or display name."""
    query = (select(Actor, User, Account).join(User, User.actor_id == Actor.id)
             .outerjoin(Account, Account.actor_id == Actor.id)
             .where(Actor.local.is_(True), Actor.type == "Person")
             .order_by(Actor.username).limit(limit))
    search = search.strip()
    if search:
        pattern = _like(search)
        query = query.where(or_(func.lower(Actor.username).like(pattern, escape="\\"),
                                func.lower(Actor.name).like(pattern, escape="\\")))
    suspended = await suspension.all_suspended(session)
    return [UserRow(actor, user.is_admin, account.approved if account else True,
                    account.email if account else None, suspended.get(actor.id))
            for actor, user, account in (await session.execute(query)).all()]


def _reason(reason: str | None) -> str | None:
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise ValidationError(f"the reason is longer than {MAX_REASON} characters")
    return reason or None


def _not_self(admin: Admin, actor: Actor, what: str) -> None:
    if admin.actor_id == actor.id:
        raise ValidationError(f"you cannot {what} yourself; ask another admin")


async def suspend(session: AsyncSession, admin: Admin, name: str,
                  reason: str | None = None) -> int:
    """The user cannot sign in; their sessions end now. How many sessions ended."""
    actor = await login.local_user(session, name)
    _not_self(admin, actor, "suspend")
    if await suspension.find(session, actor.id) is not None:
        raise ValidationError(f"{actor.username} is already suspended")
    why = _reason(reason)
    ended = await suspension.suspend(session, actor.id, who=admin.who, reason=why)
    await audit.record(session, admin.who, "user.suspend", actor.uri, reason=why,
                       details={"sessions_ended": ended})
    return ended


async def unsuspend(session: AsyncSession, admin: Admin, name: str) -> None:
    actor = await login.local_user(session, name)
    if not await suspension.lift(session, actor.id):
        raise ValidationError(f"{actor.username} is not suspended")
    await audit.record(session, admin.who, "user.unsuspend", actor.uri)


async def delete_with_content(session: AsyncSession, urls: Urls, admin: Admin, name: str,
                              reason: str | None = None) -> int:
    """Delete every post of the user (each Delete federated as when they delete it
    themselves), end their sessions, drop their password and e-mail, and keep them
    suspended so the name is not reused. How many posts were deleted."""
    actor = await login.local_user(session, name)
    _not_self(admin, actor, "delete")
    why = _reason(reason)
    posts = (await session.execute(
        select(Post).where(Post.author_id == actor.id, Post.local.is_(True),
                           Post.deleted_at.is_(None)).order_by(Post.id.desc())
    )).scalars().all()
    deleted = 0
    for post in posts:
        if post.group_id is None:  # nothing was federated from a group: just take it down
            post.deleted_at, post.content = now(), ""
        else:
            await delete_post(session, urls, actor, post.uri)
        deleted += 1
    ended = await suspension.suspend(session, actor.id, who=admin.who,
                                     reason=why or "deleted with their content")
    account = await session.get(Account, actor.id)
    if account is not None:
        account.password_hash, account.email, account.totp_secret = None, None, None
    await audit.record(session, admin.who, "user.delete", actor.uri, reason=why,
                       details={"posts_deleted": deleted, "sessions_ended": ended})
    return deleted


async def reset_password(session: AsyncSession, admin: Admin, name: str) -> tuple[Actor, str]:
    """A one-time reset token (as `fedi admin reset-password`); the admin passes it on."""
    actor = await login.local_user(session, name)
    token = await recovery.issue(session, actor.id, "reset")
    await audit.record(session, admin.who, "reset-password", actor.uri)
    return actor, token


async def set_admin(session: AsyncSession, admin: Admin, name: str, *, make: bool) -> Actor:
    actor = await login.local_user(session, name)
    user = await session.get(User, actor.id)
    assert user is not None  # local_user found it
    if user.is_admin == make:
        raise ValidationError(f"{actor.username} is {'already' if make else 'not'} an admin")
    if not make:
        _not_self(admin, actor, "remove the admin role of")
    user.is_admin = make
    await audit.record(session, admin.who, "user.admin" if make else "user.unadmin", actor.uri)
    return actor
