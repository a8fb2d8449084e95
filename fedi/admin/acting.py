"""Who is acting: a local admin (web user or `fedi admin --as USER`), or the CLI itself."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.actors.local import find_local
from fedi.errors import FediError
from fedi.moderation import audit
from fedi.store.models import Actor, User


@dataclass(frozen=True)
class Admin:
    """`who` is what the audit log records: the admin's actor URI, or "admin (cli)"."""

    who: str
    actor_id: int | None


SHELL = Admin(audit.CLI_ADMIN, None)


async def is_admin(session: AsyncSession, actor: Actor) -> bool:
    user = await session.get(User, actor.id)
    return user is not None and user.is_admin


def acting(actor: Actor) -> Admin:
    return Admin(actor.uri, actor.id)


async def named(session: AsyncSession, name: str | None) -> Admin:
    """The admin `--as NAME` names (the shell when None), or FediError saying why not."""
    if name is None:
        return SHELL
    actor = await find_local(session, name)
    if actor is None or await session.get(User, actor.id) is None:
        raise FediError(f"there is no local user {name!r}")
    if not await is_admin(session, actor):
        raise FediError(f"{name} is not an instance admin (fedi admin users make-admin {name})")
    return acting(actor)
