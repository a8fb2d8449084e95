"""Sign-up: the admin's registration mode, instance invites, and the approval queue.

A signed-up person is a local Person made by `create_user`, exactly as `fedi create-user`
makes one (same name rules and name space, keys included), plus an Account row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts.passwords import Hasher, check_password
from fedi.accounts.tokens import digest, new_token
from fedi.actors.local import check_name, create_user, find_local
from fedi.errors import ValidationError
from fedi.store.models import (
    Account,
    AccountToken,
    Actor,
    InstanceSetting,
    LoginAttempt,
    SignupInvite,
    User,
    WebSession,
    now,
)
from fedi.urls import Urls

MODES = ("open", "approval", "invite", "closed")
DEFAULT_MODE = "closed"  # an instance opens sign-up on purpose
_MODE_KEY = "registration_mode"
EMAIL_RE = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
MAX_REASON = 2000


async def get_mode(session: AsyncSession) -> str:
    row = await session.get(InstanceSetting, _MODE_KEY)
    return row.value if row is not None and row.value in MODES else DEFAULT_MODE


async def set_mode(session: AsyncSession, mode: str) -> None:
    if mode not in MODES:
        raise ValidationError(f"registration mode must be one of {', '.join(MODES)}")
    row = await session.get(InstanceSetting, _MODE_KEY)
    if row is None:
        session.add(InstanceSetting(key=_MODE_KEY, value=mode))
    else:
        row.value = mode


def check_email(email: str | None) -> str | None:
    email = (email or "").strip()
    if not email:
        return None
    if not EMAIL_RE.fullmatch(email):
        raise ValidationError(f"{email!r} is not an e-mail address")
    return email


@dataclass(frozen=True)
class Application:
    username: str
    password: str
    email: str | None = None
    reason: str | None = None  # approval mode: why they want to join
    invite: str | None = None  # invite mode: the code


async def sign_up(
    session: AsyncSession, urls: Urls, hasher: Hasher, form: Application
) -> tuple[Actor, Account]:
    """Make the account, or ValidationError saying what to fix (nothing is written then:
    the caller's transaction rolls back)."""
    mode = await get_mode(session)
    if mode == "closed":
        raise ValidationError("sign-up is closed on this instance")
    name = check_name(form.username.strip())
    check_password(form.password, name)
    email = check_email(form.email)
    reason = (form.reason or "").strip()
    if mode == "approval" and not reason:
        raise ValidationError("say why you want to join: an admin reads it before approving")
    if len(reason) > MAX_REASON:
        raise ValidationError(f"the reason is too long: at most {MAX_REASON} characters")
    if mode == "invite":
        await _redeem(session, form.invite)
    if await find_local(session, name) is not None:
        raise ValidationError(f"the name {name!r} is already taken on this instance")
    actor = await create_user(session, urls, name)
    account = Account(
        actor_id=actor.id, password_hash=hasher.hash(form.password), email=email,
        approved=mode != "approval", approval_reason=reason or None,
    )
    session.add(account)
    await session.flush()
    return actor, account


async def create_invite(
    session: AsyncSession, max_uses: int | None, expires_in_days: float | None
) -> str:
    if max_uses is not None and max_uses < 1:
        raise ValidationError("--max-uses must be at least 1")
    if expires_in_days is not None and expires_in_days <= 0:
        raise ValidationError("--expires-in-days must be more than 0")
    raw, hashed = new_token()
    session.add(SignupInvite(
        token_hash=hashed, max_uses=max_uses,
        expires_at=now() + expires_in_days * 86_400 if expires_in_days else None,
    ))
    return raw


async def _redeem(session: AsyncSession, code: str | None) -> None:
    code = (code or "").strip()
    invite = (await session.execute(
        select(SignupInvite).where(SignupInvite.token_hash == digest(code))
    )).scalar_one_or_none() if code else None
    if invite is None:
        raise ValidationError("sign-up here needs an invite: the invite code is missing or "
                              "not valid")
    if invite.expires_at is not None and invite.expires_at <= now():
        raise ValidationError("this invite has expired: ask the admin for a new one")
    # One conditional UPDATE, so two people racing for the last use cannot both get it.
    query = update(SignupInvite).where(SignupInvite.id == invite.id).values(
        uses=SignupInvite.uses + 1)
    if invite.max_uses is not None:
        query = query.where(SignupInvite.uses < invite.max_uses)
    if getattr(await session.execute(query), "rowcount", 0) != 1:
        raise ValidationError("this invite has been used up: ask the admin for a new one")


async def pending(session: AsyncSession) -> list[tuple[Actor, Account]]:
    return [(a, c) for a, c in (await session.execute(
        select(Actor, Account).join(Account, Account.actor_id == Actor.id)
        .where(Account.approved.is_(False)).order_by(Account.created_at)
    )).all()]


async def _pending_one(session: AsyncSession, name: str) -> tuple[Actor, Account]:
    actor = await find_local(session, name)
    account = await session.get(Account, actor.id) if actor is not None else None
    if actor is None or account is None:
        raise ValidationError(f"there is no account {name!r}")
    if account.approved:
        raise ValidationError(f"{name} is not waiting for approval")
    return actor, account


async def approve(session: AsyncSession, name: str) -> Actor:
    actor, account = await _pending_one(session, name)
    account.approved = True
    return actor


async def reject(session: AsyncSession, name: str) -> None:
    """Remove the application: the account never signed in or federated, so the actor goes
    too and the name is free again."""
    actor, account = await _pending_one(session, name)
    for table in (WebSession, AccountToken):
        await session.execute(delete(table).where(table.actor_id == actor.id))
    await session.execute(delete(LoginAttempt).where(LoginAttempt.username == actor.username))
    await session.delete(account)
    user = await session.get(User, actor.id)
    if user is not None:
        await session.delete(user)
    await session.flush()
    await session.delete(actor)
