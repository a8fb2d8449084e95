"""Server-side browser sessions: a random token in the cookie, its SHA-256 in the table."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts.tokens import digest, new_token
from fedi.store.models import Actor, WebSession, now

# last_seen is written at most this often, so reading pages does not write on every request.
TOUCH_EVERY = 60.0


@dataclass(frozen=True)
class SignedIn:
    session_id: int
    actor: Actor


async def start(
    session: AsyncSession, actor_id: int, user_agent: str | None, days: int
) -> str:
    """A new session (a new token every login: a cookie from before is never promoted)."""
    raw, hashed = new_token()
    moment = now()
    # This person's expired sessions go as a new one starts: the table does not grow forever.
    await session.execute(delete(WebSession).where(
        WebSession.actor_id == actor_id, WebSession.expires_at <= moment))
    session.add(WebSession(
        token_hash=hashed, actor_id=actor_id, created_at=moment, last_seen_at=moment,
        expires_at=moment + days * 86_400, user_agent=(user_agent or "")[:255] or None,
    ))
    await session.flush()
    return raw


async def find(session: AsyncSession, raw: str) -> SignedIn | None:
    row = (await session.execute(
        select(WebSession, Actor).join(Actor, Actor.id == WebSession.actor_id)
        .where(WebSession.token_hash == digest(raw))
    )).first()
    if row is None:
        return None
    web_session, actor = row
    moment = now()
    if web_session.expires_at <= moment:
        await session.delete(web_session)
        return None
    if moment - web_session.last_seen_at > TOUCH_EVERY:
        web_session.last_seen_at = moment
    return SignedIn(web_session.id, actor)


async def end(session: AsyncSession, raw: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.token_hash == digest(raw)))


async def end_all(session: AsyncSession, actor_id: int, keep: int | None = None) -> int:
    """Log out everywhere (but the session `keep`); how many sessions ended."""
    query = delete(WebSession).where(WebSession.actor_id == actor_id)
    if keep is not None:
        query = query.where(WebSession.id != keep)
    result = await session.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)


async def listed(session: AsyncSession, actor_id: int) -> list[WebSession]:
    return list((await session.execute(
        select(WebSession).where(WebSession.actor_id == actor_id)
        .order_by(WebSession.last_seen_at.desc())
    )).scalars())
