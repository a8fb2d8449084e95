"""@mentions written in a post's text: who they name, for the post's tags, links and audience.

`@name` is a local user or group; `@name@host` a remote account, found through WebFinger by
the resolver `fedi follow` uses (or a handle of this server). A mention that names nobody is
left as text. The posting use case calls this, so the web, `fedi post` and the client API
read mentions the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.actors.local import find_local
from fedi.content import Handle, mentions_in
from fedi.errors import FediError
from fedi.store.models import Actor

# One post names at most this many people; more are left as text (and fetch nothing).
MAX_MENTIONS = 20


class HandleResolver(Protocol):
    """Finds a remote account by @name@host (federation.resolve.ActorResolver)."""

    async def resolve_handle(self, session: AsyncSession, handle: str) -> Actor: ...


@dataclass(frozen=True)
class Mentions:
    actors: tuple[Actor, ...]  # everyone named, groups included, once each
    links: dict[str, str]  # Handle.key → the URL the mention links to
    unresolved: tuple[str, ...]  # handles as written that name nobody

    @property
    def people(self) -> tuple[Actor, ...]:
        """Those named who can be a post's audience (a group is not a reader)."""
        return tuple(a for a in self.actors if a.type != "Group")


def _link(actor: Actor) -> str:
    return actor.url if actor.url and actor.url.startswith(("http://", "https://")) else actor.uri


async def _known(session: AsyncSession, handle: Handle) -> Actor | None:
    """A remote account already stored here (no network)."""
    return (
        await session.execute(
            select(Actor).where(
                func.lower(Actor.username) == handle.name.lower(),
                Actor.domain == (handle.host or "").lower(), Actor.local.is_(False),
            ).limit(1)
        )
    ).scalar_one_or_none()


async def find_mentioned(
    session: AsyncSession, text: str, *, domain: str, resolver: HandleResolver | None,
) -> Mentions:
    """The accounts `text` mentions. Without a resolver (a preview) only accounts already
    known here are found: nothing is fetched."""
    actors: dict[int, Actor] = {}
    links: dict[str, str] = {}
    unresolved: list[str] = []
    for handle in mentions_in(text)[:MAX_MENTIONS]:
        actor: Actor | None
        if handle.host is None or handle.host.lower() == domain.lower():
            actor = await find_local(session, handle.name.lower())
            if actor is not None and actor.type not in ("Person", "Group"):
                actor = None
        elif resolver is None:
            actor = await _known(session, handle)
        else:
            try:
                actor = await resolver.resolve_handle(session, str(handle))
            except FediError:
                actor = None
        if actor is None:
            unresolved.append(str(handle))
            continue
        actors.setdefault(actor.id, actor)
        links[handle.key] = _link(actor)
    return Mentions(tuple(actors.values()), links, tuple(unresolved))
