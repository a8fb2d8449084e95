"""Profile changes (display name, bio, avatar), told to everyone who holds a copy of the
actor: an Update of the actor to its followers' and its remote groups' inboxes, queued in
the same transaction as the change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.vocab import PUBLIC
from fedi.content import text_to_html
from fedi.delivery.enqueue import enqueue
from fedi.errors import ValidationError
from fedi.store.models import Actor, Follow
from fedi.urls import Urls, new_id

MAX_NAME = 100
MAX_BIO = 5000
Document = Callable[[Actor], dict[str, Any]]


async def update_profile(
    session: AsyncSession, urls: Urls, document: Document, actor_id: int, display_name: str,
    bio: str,
) -> Actor:
    display_name, bio = display_name.strip(), bio.strip()
    if len(display_name) > MAX_NAME:
        raise ValidationError(f"the display name is too long: at most {MAX_NAME} characters")
    if len(bio) > MAX_BIO:
        raise ValidationError(f"the bio is too long: at most {MAX_BIO} characters")
    actor = await _actor(session, actor_id)
    actor.name = display_name or None
    actor.summary = text_to_html(bio) if bio else None
    await announce(session, urls, document, actor)
    return actor


async def set_avatar(
    session: AsyncSession, urls: Urls, document: Document, actor_id: int, file_name: str
) -> Actor:
    actor = await _actor(session, actor_id)
    actor.icon = f"{urls.base}/media/avatars/{file_name}"
    await announce(session, urls, document, actor)
    return actor


async def _actor(session: AsyncSession, actor_id: int) -> Actor:
    actor = await session.get(Actor, actor_id)
    if actor is None or not actor.local:
        raise ValidationError("there is no such local user")
    return actor


async def announce(session: AsyncSession, urls: Urls, document: Document, actor: Actor) -> None:
    """Queue Update(actor) to remote followers and the remote groups the actor belongs to."""
    followers = select(Actor.shared_inbox, Actor.inbox).join(
        Follow, Follow.follower_id == Actor.id
    ).where(Follow.target_id == actor.id, Follow.state == "accepted", Actor.local.is_(False))
    followed = select(Actor.shared_inbox, Actor.inbox).join(
        Follow, Follow.target_id == Actor.id
    ).where(Follow.follower_id == actor.id, Follow.state == "accepted", Actor.local.is_(False))
    inboxes: list[str] = []
    for query in (followers, followed):
        for shared, inbox in (await session.execute(query)).all():
            target = shared or inbox
            if target:
                inboxes.append(target)
    if not inboxes:
        return
    body = {k: v for k, v in document(actor).items() if k != "@context"}
    update = activities.activity(
        "Update", urls.activity(new_id()), actor.uri, body,
        to=[PUBLIC], cc=[actor.followers_url] if actor.followers_url else [],
    )
    await enqueue(session, actor, update, inboxes)
