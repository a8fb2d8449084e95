"""A local person likes or dislikes a post, or boosts it, or takes either back (the web's
buttons, the API).

The same rules as a member's server sending a Like: banned people and people who may not see
the post cannot vote, dislikes only where the group takes them, one vote per person (a new one
replaces the last). A local group counts the vote and relays it as it relays a remote one; a
group on another server gets the Like (or Undo) in its inbox, and so does the post's author.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.vocab import PUBLIC
from fedi.delivery.enqueue import enqueue
from fedi.errors import ValidationError
from fedi.groups import notices
from fedi.groups.likes import add_likes
from fedi.groups.relay import relay_activity
from fedi.groups.roles import Standing, standing
from fedi.groups.viewers import facts_for, viewer_for
from fedi.privacy.access import can_view
from fedi.privacy.audience import Recipient, delivery_inboxes
from fedi.privacy.visibility import Visibility
from fedi.store.models import Actor, Follow, Group, OutboundActivity, Post, Reaction
from fedi.urls import Urls, new_id

VOTES = ("Like", "Dislike")


async def _checked(session: AsyncSession, person: Actor, post: Post, kind: str) -> Actor:
    """The post's group, if `person` may vote `kind` on the post; ValidationError if not."""
    if kind not in VOTES:
        raise ValidationError(f"{kind} is not a vote")
    if not person.local or person.type != "Person":
        raise ValidationError("only local users can vote here")
    group = await session.get(Actor, post.group_id) if post.group_id else None
    visible = post.deleted_at is None and can_view(
        await facts_for(session, post), await viewer_for(session, person.uri)
    )
    if group is None or not visible:
        raise ValidationError("there is no such post")  # hidden and missing look the same
    if group.local and (await standing(session, group, person)) is Standing.BANNED:
        raise ValidationError(f"{person.username} is banned from {group.username}")
    if kind == "Dislike":
        config = await session.get(Group, group.id) if group.local else None
        if config is None or not config.allow_dislikes:
            raise ValidationError(f"{group.name or group.username} does not take dislikes")
    return group


def _vote_document(reaction: Reaction, person: Actor, post: Post, group: Actor,
                   author: Actor | None) -> dict[str, Any]:
    to = [group.uri] + ([author.uri] if author is not None and author.id != person.id else [])
    vote = activities.activity(reaction.type, reaction.activity_uri, person.uri, post.uri, to=to)
    vote["audience"] = group.uri
    return vote


async def _send(session: AsyncSession, urls: Urls, person: Actor, group: Actor, post: Post,
                activity: dict[str, Any], author: Actor | None) -> None:
    if group.local:
        session.add(
            OutboundActivity(uri=activity["id"], actor_id=person.id, body=json.dumps(activity))
        )
        await relay_activity(session, urls, group, activity, author_uri=person.uri, post=post)
        return
    inboxes = [group.inbox or ""]
    if author is not None and not author.local:
        inboxes.append(author.shared_inbox or author.inbox or "")
    await enqueue(session, person, activity, [i for i in inboxes if i])


async def vote(
    session: AsyncSession, urls: Urls, person: Actor, post: Post, kind: str = "Like"
) -> bool:
    """Toggle `person`'s `kind` vote on `post`; True when the vote is now there."""
    group = await _checked(session, person, post, kind)
    author = await session.get(Actor, post.author_id)
    previous = (
        await session.execute(
            select(Reaction).where(Reaction.post_id == post.id, Reaction.actor_id == person.id,
                                   Reaction.type.in_(VOTES))
        )
    ).scalars().all()
    undoing = any(old.type == kind for old in previous)
    for old in previous:
        if old.type == "Like":
            await add_likes(session, post, -1)
        await session.delete(old)
        undo = activities.undo(urls.activity(new_id()), person.uri,
                               _vote_document(old, person, post, group, author))
        await _send(session, urls, person, group, post, undo, author)
    if undoing:
        await session.flush()
        return False
    reaction = Reaction(post_id=post.id, actor_id=person.id, type=kind,
                        activity_uri=urls.activity(new_id()))
    session.add(reaction)
    if kind == "Like":
        await add_likes(session, post, 1)
        await notices.liked(session, post, person)
    await session.flush()
    await _send(session, urls, person, group, post,
                _vote_document(reaction, person, post, group, author), author)
    return True


async def votes_of(session: AsyncSession, person: Actor, post_ids: list[int]) -> dict[int, str]:
    """post id → "Like" | "Dislike" for the posts `person` voted on (for the buttons)."""
    if not post_ids:
        return {}
    rows = await session.execute(
        select(Reaction.post_id, Reaction.type).where(
            Reaction.actor_id == person.id, Reaction.post_id.in_(post_ids),
            Reaction.type.in_(VOTES),
        )
    )
    return {post_id: kind for post_id, kind in rows.all()}


# -- boosts ------------------------------------------------------------------------------------


async def _booster_inboxes(session: AsyncSession, person: Actor, post: Post) -> list[str]:
    """A boost goes where Mastodon sends one: the booster's followers and the post's author
    (on other servers; people here read it from the database)."""
    rows = (await session.execute(
        select(Actor).join(Follow, Follow.follower_id == Actor.id).where(
            Follow.target_id == person.id, Follow.state == "accepted")
    )).scalars().all()
    author = await session.get(Actor, post.author_id)
    recipients = [Recipient(a.uri, a.inbox, a.shared_inbox, a.local)
                  for a in [*rows, *([author] if author is not None else [])]]
    return delivery_inboxes(recipients, exclude=[person.uri])


async def boost(session: AsyncSession, urls: Urls, person: Actor, post: Post, *,
                undo: bool = False) -> bool:
    """`person` boosts `post` (or takes the boost back): a Reaction "Announce" here, and the
    person's Announce (or its Undo) to their followers and the post's author. Only public and
    unlisted posts can be boosted, as on Mastodon. True when the boost is now there."""
    if not person.local or person.type != "Person":
        raise ValidationError("only local users can boost here")
    visible = post.deleted_at is None and can_view(
        await facts_for(session, post), await viewer_for(session, person.uri))
    if not visible:
        raise ValidationError("there is no such post")
    if post.held is not None:
        raise ValidationError("the post is waiting for a moderator; it cannot be boosted yet")
    if post.visibility not in (Visibility.PUBLIC.value, Visibility.UNLISTED.value):
        raise ValidationError("only public and unlisted posts can be boosted")
    existing = (await session.execute(select(Reaction).where(
        Reaction.post_id == post.id, Reaction.actor_id == person.id,
        Reaction.type == "Announce"))).scalar_one_or_none()
    followers = person.followers_url or Urls.followers(person.uri)
    if undo:
        if existing is None:
            return False
        announce = activities.activity("Announce", existing.activity_uri, person.uri, post.uri,
                                       to=[PUBLIC], cc=[followers])
        await session.delete(existing)
        await session.flush()
        await enqueue(session, person, activities.undo(urls.activity(new_id()), person.uri,
                                                       announce),
                      await _booster_inboxes(session, person, post))
        return False
    if existing is not None:
        return True
    reaction = Reaction(post_id=post.id, actor_id=person.id, type="Announce",
                        activity_uri=urls.activity(new_id()))
    session.add(reaction)
    await session.flush()
    await notices.boosted(session, post, person)
    announce = activities.activity("Announce", reaction.activity_uri, person.uri, post.uri,
                                   to=[PUBLIC], cc=[followers])
    announce["published"] = activities.iso(reaction.created_at)
    await enqueue(session, person, announce, await _booster_inboxes(session, person, post))
    return True
