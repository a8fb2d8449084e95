"""Login throttling: failed sign-ins counted per account and per client address in a table,
so every server process sees the same counts and a restart forgets nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.store.models import LoginAttempt, now


@dataclass(frozen=True)
class Limits:
    per_account: int = 5
    per_address: int = 20
    window_seconds: int = 15 * 60


def refusal(account_failures: int, address_failures: int, limits: Limits) -> str | None:
    """Why a sign-in may not even be tried now, or None (pure)."""
    minutes = limits.window_seconds // 60
    if account_failures >= limits.per_account:
        return (f"too many failed sign-ins for this account: wait {minutes} minutes, "
                "or reset the password")
    if address_failures >= limits.per_address:
        return f"too many failed sign-ins from your address: wait {minutes} minutes"
    return None


async def check(
    session: AsyncSession, username: str, address: str, limits: Limits
) -> str | None:
    since = now() - limits.window_seconds
    by_account = (await session.execute(
        select(func.count()).select_from(LoginAttempt)
        .where(LoginAttempt.username == username, LoginAttempt.at >= since)
    )).scalar_one()
    by_address = (await session.execute(
        select(func.count()).select_from(LoginAttempt)
        .where(LoginAttempt.address == address, LoginAttempt.at >= since)
    )).scalar_one()
    return refusal(by_account, by_address, limits)


async def failed(session: AsyncSession, username: str, address: str) -> None:
    session.add(LoginAttempt(username=username[:255], address=address[:64]))
    # Old rows are no longer counted; drop them as we go so the table stays small.
    await session.execute(delete(LoginAttempt).where(LoginAttempt.at < now() - 86_400))


async def succeeded(session: AsyncSession, username: str) -> None:
    """The account's own failures are forgiven; its address's are not."""
    await session.execute(delete(LoginAttempt).where(LoginAttempt.username == username))
