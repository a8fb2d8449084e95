"""Password-reset and e-mail verification tokens: single use, hashed at rest, short-lived."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts.login import set_password
from fedi.accounts.passwords import Hasher, check_password
from fedi.accounts.tokens import digest, new_token
from fedi.errors import ValidationError
from fedi.store.models import Account, AccountToken, Actor, now

RESET_SECONDS = 3600
VERIFY_SECONDS = 3 * 86_400


async def issue(session: AsyncSession, actor_id: int, purpose: str) -> str:
    raw, hashed = new_token()
    ttl = RESET_SECONDS if purpose == "reset" else VERIFY_SECONDS
    session.add(AccountToken(token_hash=hashed, actor_id=actor_id, purpose=purpose,
                             expires_at=now() + ttl))
    await session.flush()
    return raw


async def _valid(session: AsyncSession, raw: str, purpose: str) -> AccountToken:
    token = (await session.execute(
        select(AccountToken).where(AccountToken.token_hash == digest(raw),
                                   AccountToken.purpose == purpose)
    )).scalar_one_or_none() if raw else None
    if token is None or token.used_at is not None:
        raise ValidationError("this link is not valid or has already been used")
    if token.expires_at <= now():
        raise ValidationError("this link has expired: ask for a new one")
    return token


async def _use(session: AsyncSession, token: AccountToken) -> None:
    # Conditional, so the same link used twice at once works only once.
    result = await session.execute(
        update(AccountToken).where(AccountToken.id == token.id, AccountToken.used_at.is_(None))
        .values(used_at=now())
    )
    if getattr(result, "rowcount", 0) != 1:
        raise ValidationError("this link is not valid or has already been used")


async def check_reset(session: AsyncSession, raw: str) -> Actor:
    token = await _valid(session, raw, "reset")
    actor = await session.get(Actor, token.actor_id)
    assert actor is not None
    return actor


async def reset(session: AsyncSession, hasher: Hasher, raw: str, password: str) -> Actor:
    token = await _valid(session, raw, "reset")
    actor = await session.get(Actor, token.actor_id)
    assert actor is not None
    check_password(password, actor.username)  # before the token is spent on a bad one
    await _use(session, token)
    await set_password(session, hasher, actor, password)
    return actor


async def verify_email(session: AsyncSession, raw: str) -> Actor:
    token = await _valid(session, raw, "verify")
    await _use(session, token)
    account = await session.get(Account, token.actor_id)
    actor = await session.get(Actor, token.actor_id)
    assert account is not None and actor is not None
    account.email_verified_at = now()
    return actor


async def account_for_reset(session: AsyncSession, who: str) -> tuple[Actor, Account] | None:
    """The account a reset request names (user name or verified e-mail), if it may get one."""
    who = who.strip()
    row = (await session.execute(
        select(Actor, Account).join(Account, Account.actor_id == Actor.id)
        .where(Actor.local.is_(True),
               (Actor.username == who.lower()) | (func.lower(Account.email) == who.lower()))
    )).first()
    if row is None:
        return None
    actor, account = row
    if not account.email or account.email_verified_at is None:
        return None
    return actor, account
