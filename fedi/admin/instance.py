"""Instance settings and the sign-up queue for admins, audited as `fedi admin instance` and
`fedi admin registrations` audit them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts import instance, oauth, registration
from fedi.admin.acting import Admin
from fedi.moderation import audit
from fedi.store.models import Actor


async def update_about(
    session: AsyncSession, admin: Admin, *, description: str, rules: Sequence[str],
    contact: str,
) -> list[str]:
    """Replace the About page's description, rules and contact; the names of what changed."""
    before = await instance.load(session)
    after = await instance.update(session, description=description, rules=tuple(rules),
                                  contact=contact)
    changed = [name for name in ("description", "rules", "contact")
               if getattr(before, name) != getattr(after, name)]
    if changed:
        await audit.record(session, admin.who, "instance-about", "instance",
                           details={"changed": changed})
    return changed


async def set_registrations(session: AsyncSession, admin: Admin, mode: str) -> None:
    await registration.set_mode(session, mode)
    await audit.record(session, admin.who, "registrations", mode)


async def set_password_grant(session: AsyncSession, admin: Admin, enabled: bool) -> None:
    """Let apps trade a person's password for a token, or not (the OAuth password grant)."""
    await oauth.set_password_grant(session, enabled)
    await audit.record(session, admin.who, "api-password-grant", "on" if enabled else "off")


async def approve(session: AsyncSession, admin: Admin, name: str) -> Actor:
    actor = await registration.approve(session, name)
    await audit.record(session, admin.who, "registration-approve", actor.uri)
    return actor


async def refuse(session: AsyncSession, admin: Admin, name: str) -> None:
    await registration.reject(session, name)
    await audit.record(session, admin.who, "registration-reject", name)
