"""A local actor's row as the ActivityPub document served at its id (and sent in Updates)."""

from __future__ import annotations

import json
from typing import Any

from fedi.activitypub.actors import ActorView, actor_document
from fedi.store.models import Actor, Group
from fedi.urls import Urls


def view_of(actor: Actor, urls: Urls, group: Group | None = None) -> ActorView:
    if not (actor.inbox and actor.outbox and actor.followers_url and actor.key_id
            and actor.public_key_pem):
        raise ValueError(f"local actor {actor.uri} is incomplete")
    return ActorView(
        id=actor.uri,
        type=actor.type,
        username=actor.username,
        name=actor.name,
        summary=actor.summary,
        inbox=actor.inbox,
        outbox=actor.outbox,
        followers=actor.followers_url,
        following=Urls.following(actor.uri) if actor.type == "Person" else None,
        shared_inbox=urls.shared_inbox,
        key_id=actor.key_id,
        public_key_pem=actor.public_key_pem,
        url=actor.url,
        manually_approves_followers=actor.manually_approves_followers,
        moderators=Urls.moderators(actor.uri) if actor.type == "Group" else None,
        featured=f"{actor.uri}/featured" if actor.type == "Group" else None,
        rules=tuple(json.loads(group.rules or "[]")) if group else (),
        questions=tuple(json.loads(group.questions or "[]")) if group else (),
        assertion_key_id=actor.assertion_key_id,
        assertion_public_key=actor.assertion_public_key,
        icon=actor.icon,
        image=group.banner if group else None,
    )


def document_of(actor: Actor, urls: Urls, group: Group | None = None) -> dict[str, Any]:
    return actor_document(view_of(actor, urls, group))

