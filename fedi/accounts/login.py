"""Sign in, set and change passwords."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts import oauth, sessions, suspension, throttle, totp
from fedi.accounts.passwords import Hasher, check_password
from fedi.actors.local import find_local
from fedi.errors import FediError, ValidationError
from fedi.store.models import Account, Actor, User, now


class LoginRefused(FediError):
    """`needs_code`: the password was right and a TOTP code is asked for."""

    def __init__(self, reason: str, needs_code: bool = False) -> None:
        super().__init__(reason)
        self.needs_code = needs_code


@dataclass(frozen=True)
class Attempt:
    username: str
    password: str
    address: str
    user_agent: str | None = None
    code: str | None = None


WRONG = "the user name or password is wrong"


async def log_in(
    session: AsyncSession, hasher: Hasher, attempt: Attempt, limits: throttle.Limits,
    session_days: int,
) -> tuple[Actor, str]:
    """The actor and a new session token, or LoginRefused saying why. The caller commits
    either way: a failure is recorded for the throttle."""
    name = attempt.username.strip().lower()[:255]
    refused = await throttle.check(session, name, attempt.address, limits)
    if refused:
        raise LoginRefused(refused)
    actor = await find_local(session, name)
    account = await session.get(Account, actor.id) if actor is not None else None
    if not hasher.verify(account.password_hash if account else None, attempt.password[:1024]):
        await throttle.failed(session, name, attempt.address)
        raise LoginRefused(WRONG)
    assert actor is not None and account is not None
    if account.totp_secret:
        if not attempt.code:
            raise LoginRefused("enter the 6-digit code from your authenticator app",
                               needs_code=True)
        if not totp.verify(account.totp_secret, attempt.code):
            await throttle.failed(session, name, attempt.address)
            raise LoginRefused("the code is wrong or has expired; try the current one",
                               needs_code=True)
    if not account.approved:
        raise LoginRefused("your account is waiting for an admin's approval")
    if await suspension.find(session, actor.id) is not None:
        raise LoginRefused("this account is suspended by the instance's admins")
    await throttle.succeeded(session, name)
    if hasher.needs_rehash(account.password_hash or ""):
        account.password_hash = hasher.hash(attempt.password)
    token = await sessions.start(session, actor.id, attempt.user_agent, session_days)
    return actor, token


async def local_user(session: AsyncSession, name: str) -> Actor:
    actor = await find_local(session, name)
    if actor is None or actor.type != "Person" or await session.get(User, actor.id) is None:
        raise ValidationError(f"there is no local user {name!r}")
    return actor


async def set_password(
    session: AsyncSession, hasher: Hasher, actor: Actor, password: str
) -> None:
    """Set a password (and end every session: whoever knew the old one is out)."""
    check_password(password, actor.username)
    account = await session.get(Account, actor.id)
    if account is None:
        account = Account(actor_id=actor.id, approved=True)
        session.add(account)
    account.password_hash = hasher.hash(password)
    account.password_changed_at = now()
    await session.flush()
    await sessions.end_all(session, actor.id)
    await oauth.revoke_for_person(session, actor.id)  # a token got with the old one, too


async def change_password(
    session: AsyncSession, hasher: Hasher, actor: Actor, current: str, new: str,
    keep_session: int,
) -> None:
    account = await session.get(Account, actor.id)
    if account is None or not hasher.verify(account.password_hash, current[:1024]):
        raise ValidationError("the current password is wrong")
    check_password(new, actor.username)
    account.password_hash = hasher.hash(new)
    account.password_changed_at = now()
    await sessions.end_all(session, actor.id, keep=keep_session)
    await oauth.revoke_for_person(session, actor.id)
