"""Create and look up local actors: users, groups and the instance actor."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.integrity import generate_ed25519_keypair
from fedi.activitypub.keys import generate_rsa_keypair
from fedi.errors import ValidationError
from fedi.store.models import Actor, Group, GroupRole, User
from fedi.urls import GROUPS, USERS, Urls

NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,62}$")
INSTANCE_USERNAME = "instance.actor"
RESERVED = frozenset({INSTANCE_USERNAME, "actor", "admin.", "inbox", "static"})
JOIN_POLICIES = ("open", "approval", "invite")
PRIVACIES = ("public", "private", "hidden")
REPLY_POLICIES = ("anyone", "members", "mentioned", "nobody", "approval")


def check_name(name: str) -> str:
    """Names are WebFinger-safe: lower-case letters, digits, _ . - (1–63 chars)."""
    if not NAME_RE.fullmatch(name) or name in RESERVED:
        raise ValidationError(
            f"{name!r} is not a valid name: use 1–63 lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter, digit or '_'"
        )
    return name


async def find_local(session: AsyncSession, name: str) -> Actor | None:
    return (
        await session.execute(select(Actor).where(Actor.local.is_(True), Actor.username == name))
    ).scalar_one_or_none()


async def _new_local_actor(
    session: AsyncSession, urls: Urls, kind: str, path: str, name: str, title: str | None,
    summary: str | None,
) -> Actor:
    if await find_local(session, name) is not None:
        raise ValidationError(f"the name {name!r} is already taken on this instance")
    private_pem, public_pem = generate_rsa_keypair()
    uri = urls.actor(path, name)
    actor = Actor(
        uri=uri,
        type=kind,
        local=True,
        username=name,
        domain=urls.base.split("://", 1)[1],
        name=title,
        summary=summary,
        inbox=Urls.inbox(uri),
        shared_inbox=urls.shared_inbox,
        outbox=Urls.outbox(uri),
        followers_url=Urls.followers(uri),
        url=uri,
        key_id=Urls.key_id(uri),
        public_key_pem=public_pem,
        private_key_pem=private_pem,
    )
    add_assertion_key(actor)
    session.add(actor)
    await session.flush()
    return actor


def add_assertion_key(actor: Actor) -> None:
    """Give a local actor its Ed25519 key for object integrity proofs (FEP-8b32)."""
    actor.assertion_private_pem, actor.assertion_public_key = generate_ed25519_keypair()
    actor.assertion_key_id = Urls.assertion_key_id(actor.uri)


async def create_user(
    session: AsyncSession, urls: Urls, name: str, *, admin: bool = False,
    display_name: str | None = None,
) -> Actor:
    actor = await _new_local_actor(
        session, urls, "Person", USERS, check_name(name), display_name, None
    )
    session.add(User(actor_id=actor.id, is_admin=admin))
    return actor


async def create_group(
    session: AsyncSession, urls: Urls, name: str, *, owner: str, title: str | None = None,
    summary: str | None = None, join_policy: str | None = None, rules: Sequence[str] = (),
    questions: Sequence[str] = (), privacy: str = "public", reply_policy: str = "members",
) -> Actor:
    if privacy not in PRIVACIES:
        raise ValidationError(f"group privacy must be one of {', '.join(PRIVACIES)}")
    if reply_policy not in REPLY_POLICIES:
        raise ValidationError(f"reply rule must be one of {', '.join(REPLY_POLICIES)}")
    # Private groups admit by approval or invite; hidden groups by invite only.
    join_policy = join_policy or {"public": "open", "private": "approval"}.get(privacy, "invite")
    if join_policy not in JOIN_POLICIES:
        raise ValidationError(f"join policy must be one of {', '.join(JOIN_POLICIES)}")
    if privacy == "private" and join_policy == "open":
        raise ValidationError("a private group cannot be open: use --join approval or invite")
    if privacy == "hidden" and join_policy != "invite":
        raise ValidationError("a hidden group is invite-only: use --join invite")
    owner_actor = await find_local(session, owner)
    if owner_actor is None or owner_actor.type != "Person":
        raise ValidationError(f"there is no local user {owner!r}; create it with fedi create-user")
    actor = await _new_local_actor(session, urls, "Group", GROUPS, check_name(name), title, summary)
    actor.manually_approves_followers = join_policy != "open"
    session.add(Group(
        actor_id=actor.id, owner_id=owner_actor.id, join_policy=join_policy, privacy=privacy,
        reply_policy=reply_policy,
        rules=json.dumps([r.strip() for r in rules if r.strip()]),
        questions=json.dumps([q.strip() for q in questions if q.strip()]),
    ))
    session.add(GroupRole(group_id=actor.id, actor_id=owner_actor.id, role="owner"))
    return actor


async def ensure_instance_actor(session: AsyncSession, urls: Urls) -> Actor:
    """The FEP-2677 Application actor that signs our fetches; created on first run."""
    found = (
        await session.execute(select(Actor).where(Actor.uri == urls.instance_actor))
    ).scalar_one_or_none()
    if found is not None:
        return found
    private_pem, public_pem = generate_rsa_keypair()
    actor = Actor(
        uri=urls.instance_actor,
        type="Application",
        local=True,
        username=INSTANCE_USERNAME,
        domain=urls.base.split("://", 1)[1],
        name=None,
        inbox=Urls.inbox(urls.instance_actor),
        shared_inbox=urls.shared_inbox,
        outbox=Urls.outbox(urls.instance_actor),
        followers_url=Urls.followers(urls.instance_actor),
        url=urls.base,
        key_id=Urls.key_id(urls.instance_actor),
        public_key_pem=public_pem,
        private_key_pem=private_pem,
        manually_approves_followers=True,
    )
    add_assertion_key(actor)
    session.add(actor)
    await session.flush()
    return actor
