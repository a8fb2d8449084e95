"""`/about`: who runs this server, its rules, how to reach them, how to sign up, a few public
figures and where its source code is (AGPL-3.0: people who use it over the network may
have the source). `/source.tar.gz` is the running code itself, for when no FEDI_SOURCE_URL
names a repository."""

from __future__ import annotations

import asyncio
import functools
import io
import tarfile
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.accounts import instance, registration
from fedi.accounts.registration import EMAIL_RE
from fedi.activitypub.parse import is_http_url
from fedi.groups.counts import count_visible
from fedi.privacy.visibility import GroupPrivacy
from fedi.store.models import Actor, Group, Post, User
from fedi.web.auth import render, services_of

LICENCE = "AGPL-3.0-or-later"
LICENCE_URL = "https://www.gnu.org/licenses/agpl-3.0.html"
SOURCE_ARCHIVE = "/source.tar.gz"
REGISTRATION_TEXT = {
    "open": "Anyone may sign up.",
    "approval": "Anyone may apply; an admin approves each account.",
    "invite": "Sign-up needs an invite code from an admin.",
    "closed": "Sign-up is closed.",
}


@dataclass(frozen=True)
class Figures:
    users: int
    groups: int
    posts: int


async def figures(session: AsyncSession) -> Figures:
    """Counted as NodeInfo counts: hidden groups and what a visitor may not see are not."""
    users = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    groups = (await session.execute(
        select(func.count()).select_from(Group).join(Actor, Actor.id == Group.actor_id)
        .where(Actor.local, Group.privacy != GroupPrivacy.HIDDEN.value)
    )).scalar_one()
    posts = await count_visible(session, Post.local.is_(True))
    return Figures(users=int(users), groups=int(groups), posts=posts)


def contact_href(contact: str) -> str | None:
    """A link for the admin contact when it is an e-mail address or a web address."""
    if EMAIL_RE.fullmatch(contact):
        return f"mailto:{contact}"
    return contact if is_http_url(contact) else None


async def about(request: Request) -> Response:
    services = services_of(request)
    async with services.sessionmaker() as session:
        info = await instance.load(session)
        mode = await registration.get_mode(session)
        counted = await figures(session)
    return await render(request, "about.html", {
        "info": info, "contact_href": contact_href(info.contact),
        "registration": REGISTRATION_TEXT[mode], "mode": mode, "figures": counted,
        "source_url": services.settings.source_url, "source_archive": SOURCE_ARCHIVE,
        "licence": LICENCE, "licence_url": LICENCE_URL,
    })


def _add(tar: tarfile.TarFile, node: Traversable, name: str) -> None:
    if node.is_dir():
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name != "__pycache__":
                _add(tar, child, f"{name}/{child.name}")
    elif not node.name.endswith((".pyc", ".pyo")):
        data = node.read_bytes()
        entry = tarfile.TarInfo(name)
        entry.size, entry.mode, entry.mtime = len(data), 0o644, 0
        tar.addfile(entry, io.BytesIO(data))


@functools.cache
def source_archive() -> bytes:
    """The installed package, as it runs (built once per process)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _add(tar, files("fedi"), "fedi")
    return buffer.getvalue()


async def source(_request: Request) -> Response:
    body = await asyncio.to_thread(source_archive)
    return Response(body, media_type="application/gzip", headers={
        "Content-Disposition": 'attachment; filename="fedi-source.tar.gz"',
        "Cache-Control": "public, max-age=3600"})


routes = [Route("/about", about), Route(SOURCE_ARCHIVE, source)]
