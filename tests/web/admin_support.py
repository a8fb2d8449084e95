"""Helpers for the /admin page tests: an admin and a member signed in on the real app."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select

from fedi.store.models import Actor, AuditEntry, User
from tests.accounts.support import log_in, post_form, sign_up
from tests.support.app import InProcess


async def make_admin(fedi: InProcess, name: str) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        actor = (await session.execute(select(Actor).where(
            Actor.username == name, Actor.local.is_(True)))).scalar_one()
        user = await session.get(User, actor.id)
        assert user is not None
        user.is_admin = True


async def signed_up_admin(fedi: InProcess, http: httpx.AsyncClient, name: str = "root") -> str:
    """Sign `name` up in this browser and make them an admin; their actor URI."""
    assert (await sign_up(http, name)).status_code == 303
    await make_admin(fedi, name)
    assert (await log_in(http, name)).status_code == 303
    return await uri_of(fedi, name)


async def uri_of(fedi: InProcess, name: str) -> str:
    async with fedi.services.sessionmaker() as session:
        return (await session.execute(select(Actor.uri).where(
            Actor.username == name, Actor.local.is_(True)))).scalar_one()


async def act(http: httpx.AsyncClient, page: str, action: str, **fields: str) -> httpx.Response:
    """POST an admin form as the browser would, with the page's CSRF token."""
    return await post_form(http, page, action, **fields)


async def audited(fedi: InProcess, action: str) -> list[AuditEntry]:
    async with fedi.services.sessionmaker() as session:
        return list((await session.execute(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        )).scalars())


def details(entry: AuditEntry) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(entry.details)
    return result


