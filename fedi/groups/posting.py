"""A local member posts into a local group; the group relays it to its members (FEP-1b12)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC
from fedi.content import text_to_html
from fedi.delivery.enqueue import enqueue
from fedi.errors import ValidationError
from fedi.privacy.audience import Recipient, delivery_inboxes
from fedi.store.models import Actor, Follow, OutboundActivity, Post, now
from fedi.urls import Urls, new_id

MAX_TEXT = 50_000


@dataclass(frozen=True)
class Published:
    post: Post
    create: dict[str, Any]
    announce: dict[str, Any]


async def group_recipients(session: AsyncSession, group: Actor) -> list[Recipient]:
    rows = await session.execute(
        select(Actor)
        .join(Follow, Follow.follower_id == Actor.id)
        .where(Follow.target_id == group.id, Follow.state == "accepted")
    )
    return [Recipient(a.uri, a.inbox, a.shared_inbox, a.local) for a in rows.scalars()]


async def post_to_group(
    session: AsyncSession, urls: Urls, author: Actor, group: Actor, text: str
) -> Published:
    if not author.local or author.type != "Person":
        raise ValidationError("only local users can post with this command")
    if not group.local or group.type != "Group":
        raise ValidationError(f"{group.username} is not a local group")
    if not text.strip():
        raise ValidationError("the post is empty; give the text to post")
    if len(text) > MAX_TEXT:
        raise ValidationError(f"the post is {len(text)} characters; the limit is {MAX_TEXT}")
    published = now()
    post_uri = urls.post(new_id())
    note: dict[str, Any] = {
        "@context": AS_CONTEXT,
        "id": post_uri,
        "type": "Note",
        "attributedTo": author.uri,
        "content": text_to_html(text),
        "source": {"content": text, "mediaType": "text/plain"},
        "published": activities.iso(published),
        "to": [PUBLIC, group.uri],
        "cc": [Urls.followers(group.uri)],
        "audience": group.uri,
        "context": f"{post_uri}/context",
        "replies": f"{post_uri}/replies",
        "url": post_uri,
        "tag": [
            {"type": "Mention", "href": group.uri, "name": f"@{group.username}@{group.domain}"}
        ],
    }
    post = Post(
        uri=post_uri, type="Note", author_id=author.id, group_id=group.id,
        context=note["context"], content=note["content"], visibility="public", local=True,
        published=published, document=json.dumps(note),
    )
    session.add(post)
    create = activities.create(urls.activity(new_id()), note)
    session.add(OutboundActivity(uri=create["id"], actor_id=author.id, body=json.dumps(create)))
    to, cc = activities.public_addressing(group.uri, Urls.followers(group.uri))
    announce = activities.announce(
        urls.activity(new_id()), group.uri, create, to=to, cc=cc, published=published
    )
    inboxes = delivery_inboxes(await group_recipients(session, group), exclude=[author.uri])
    await enqueue(session, group, announce, inboxes)
    await session.flush()
    return Published(post, create, announce)
