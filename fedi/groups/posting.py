"""A local member posts or replies in a local group, under the same rules as remote members."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities, integrity
from fedi.activitypub.integrity import DATA_INTEGRITY_CONTEXT
from fedi.activitypub.vocab import AS_CONTEXT
from fedi.content import markdown_to_html
from fedi.delivery.enqueue import enqueue
from fedi.errors import ValidationError
from fedi.groups import notices
from fedi.groups.admission import Held, Refused, judge
from fedi.groups.circles import circle_people, resolve_circle
from fedi.groups.mentions import HandleResolver, Mentions, find_mentioned
from fedi.groups.relay import relay_activity, relay_post, withdraw_boost
from fedi.groups.roles import moderators
from fedi.groups.threads import find_post, store_post
from fedi.privacy.interaction import can_reply_property, interaction_policy
from fedi.privacy.visibility import (
    GroupPrivacy,
    ReplyPolicy,
    Visibility,
    addressing,
    check_allowed_in_group,
    clamp_to_parent,
    default_for_group,
    parse_reply_policy,
    parse_visibility,
)
from fedi.store.models import (
    Actor,
    Follow,
    Group,
    OutboundActivity,
    Post,
    PostAudience,
    PostEdit,
    now,
)
from fedi.urls import Urls, new_id

MAX_TEXT = 50_000
MAX_TITLE = 300
MARKDOWN = "text/markdown"


@dataclass(frozen=True)
class Published:
    post: Post
    create: dict[str, Any]


def _mention(actor: Actor) -> dict[str, str]:
    return {"type": "Mention", "href": actor.uri, "name": f"@{actor.username}@{actor.domain}"}


async def _admission(
    session: AsyncSession, author: Actor, group: Actor, parent: Post | None
) -> str | None:
    """Why a post waits for a moderator (None: it goes out now); ValidationError if refused.
    A local group decides as it does for a member on any server (groups.admission); a remote
    group decides for itself, and takes posts from its members only."""
    if group.local:
        config = await session.get(Group, group.id)
        if config is None:
            raise ValidationError(f"{group.username} has no group settings")
        decision = await judge(session, group, config, author, parent)
        if isinstance(decision, Refused):
            raise ValidationError(
                f"{author.username} may not post in {group.username}: {decision.reason}"
            )
        return decision.reason if isinstance(decision, Held) else None
    joined = await session.execute(
        select(Follow.id).where(
            Follow.follower_id == author.id, Follow.target_id == group.id,
            Follow.state == "accepted",
        )
    )
    if joined.first() is None:
        raise ValidationError(
            f"{author.username} is not a member of {group.uri}; join it with fedi follow first"
        )
    return None


@dataclass(frozen=True)
class Audience:
    """Who a new post is for: its visibility, reply rule and named people."""

    visibility: Visibility
    reply_policy: ReplyPolicy
    people: tuple[Actor, ...] = ()  # for mentioned / circle / moderators


async def _group_defaults(
    session: AsyncSession, group: Actor
) -> tuple[GroupPrivacy, Visibility, ReplyPolicy]:
    config = await session.get(Group, group.id) if group.local else None
    if config is None:
        return GroupPrivacy.PUBLIC, Visibility.PUBLIC, ReplyPolicy.MEMBERS
    privacy = GroupPrivacy(config.privacy)
    return (privacy, default_for_group(privacy, config.default_visibility),
            ReplyPolicy(config.reply_policy))


async def choose_audience(
    session: AsyncSession, author: Actor, group: Actor, *, visibility: str | None,
    replies: str | None, mentions: list[Actor], parent: Post | None,
) -> Audience:
    """Apply the group's privacy and the parent's reach to what the author asked for."""
    privacy, default_kind, default_policy = await _group_defaults(session, group)
    if visibility is None:
        kind, circle_name = (default_kind, None)
    else:
        kind, circle_name = parse_visibility(visibility)
    check_allowed_in_group(kind, privacy)
    policy = parse_reply_policy(replies) if replies else default_policy
    people: list[Actor] = list(mentions)
    if kind is Visibility.CIRCLE:
        if circle_name is None:
            raise ValidationError("a circle post names its circle: --visibility circle:NAME")
        circle = await resolve_circle(session, circle_name, author=author, group=group)
        people = await circle_people(session, circle)
        if not people:
            raise ValidationError(f"the circle {circle_name!r} is empty")
    elif kind is Visibility.MODERATORS and group.local:
        people = [a for a in await moderators(session, group) if a.id != author.id]
    elif kind is Visibility.MENTIONED and not people:
        raise ValidationError(
            "a post for the mentioned people must mention someone: write @name or "
            "@name@host in the text (or use --mention ACTOR)"
        )
    if parent is not None:
        parent_kind = Visibility(parent.visibility)
        narrowed = clamp_to_parent(kind, parent_kind)
        if narrowed is not kind or parent_kind.has_named_audience:
            # The reply goes no further than the parent: to its audience and its author.
            kind = narrowed
            people = await _parent_audience(session, parent) if kind.has_named_audience else []
    return Audience(kind, policy, tuple(people))


async def _parent_audience(session: AsyncSession, parent: Post) -> list[Actor]:
    rows = await session.execute(
        select(Actor).join(PostAudience, PostAudience.actor_id == Actor.id)
        .where(PostAudience.post_id == parent.id)
    )
    people = {a.id: a for a in rows.scalars()}
    author = await session.get(Actor, parent.author_id)
    if author is not None:
        people[author.id] = author
    return list(people.values())


async def post_to_group(
    session: AsyncSession, urls: Urls, author: Actor, group: Actor, text: str,
    *, reply_to: str | None = None, title: str | None = None, visibility: str | None = None,
    replies: str | None = None, mentions: list[Actor] | None = None,
    resolver: HandleResolver | None = None, post_id: str | None = None,
) -> Published:
    """Post into a group, local or on another server; the group relays it to its audience.

    `text` is Markdown; the @mentions in it are found here (remote ones through `resolver`)
    and count as the post's mentioned people. `post_id` (a web form's one-time id) makes a
    second submission of the same form fail on the post's unique URI instead of posting
    twice."""
    if not author.local or author.type != "Person":
        raise ValidationError("only local users can post with this command")
    if group.type != "Group":
        raise ValidationError(f"{group.uri} is not a group")
    _check_text(text)
    if title is not None and len(title) > MAX_TITLE:
        raise ValidationError(f"the title is {len(title)} characters; the limit is {MAX_TITLE}")
    parent: Post | None = None
    parent_author: Actor | None = None
    if reply_to is not None:
        parent = await find_post(session, reply_to)
        if parent is None or parent.group_id != group.id or parent.deleted_at is not None:
            raise ValidationError(f"{reply_to} is not a post in {group.username}")
        parent_author = await session.get(Actor, parent.author_id)
    held = await _admission(session, author, group, parent)
    written = await find_mentioned(session, text, domain=author.domain, resolver=resolver)
    named_people = {a.id: a for a in [*(mentions or []), *written.people] if a.id != author.id}
    try:
        audience = await choose_audience(
            session, author, group, visibility=visibility, replies=replies,
            mentions=list(named_people.values()), parent=parent,
        )
    except ValidationError as exc:
        raise ValidationError(_with_unresolved(exc.reason, written)) from None
    followers = group.followers_url or Urls.followers(group.uri)
    named = [p.uri for p in audience.people if p.id != author.id]
    to, cc = addressing(audience.visibility, group=group.uri, followers=followers, audience=named)

    post_uri = urls.post(post_id or new_id())
    tags = [_mention(group), *(_mention(p) for p in audience.people if p.id != author.id),
            *(_mention(a) for a in written.actors if a.id != author.id)]
    if parent_author is not None and parent_author.id != author.id:
        if audience.visibility.open_to_anyone or audience.visibility is Visibility.MEMBERS:
            cc.append(parent_author.uri)  # the person answered is told, as Mastodon expects
        tags.append(_mention(parent_author))
    note: dict[str, Any] = {
        "@context": AS_CONTEXT,
        "id": post_uri,
        "type": "Note",
        "attributedTo": author.uri,
        "content": markdown_to_html(text, written.links),
        "source": {"content": text, "mediaType": MARKDOWN},
        "published": activities.iso(now()),
        "to": to,
        "cc": cc,
        "audience": group.uri,
        "replies": f"{post_uri}/replies",
        "url": post_uri,
        "tag": _unique_tags(tags),
        "interactionPolicy": interaction_policy(
            audience.reply_policy, author=author.uri, group=group.uri, followers=followers,
            mentioned=named, public=audience.visibility.open_to_anyone,
        ),
        "canReply": can_reply_property(
            audience.reply_policy, author=author.uri, followers=followers
        ),
    }
    if parent is not None:
        note["inReplyTo"] = parent.uri
        if parent.context:
            note["context"] = parent.context
    if title and parent is None:
        note["name"] = title
    post = await store_post(
        session, urls, note, author=author, group=group, parent=parent, local=True,
        own_context=group.local, visibility=audience.visibility.value,
        reply_policy=audience.reply_policy.value, held=held,
    )
    session.add_all(PostAudience(post_id=post.id, actor_id=p.id) for p in audience.people)
    await session.flush()
    await notices.post_stored(session, post)
    if post.context:
        note["context"] = post.context
    post.document = json.dumps(note)
    create = proven(author, activities.create(urls.activity(new_id()), note))
    post.activity = json.dumps(create)
    await _send(session, urls, author, group, post, create, new_post=True)
    return Published(post, create)


def proven(author: Actor, activity: dict[str, Any]) -> dict[str, Any]:
    """The activity with its author's integrity proof (FEP-8b32), so that a group can relay it
    to servers that cannot fetch it from here and they can still check who wrote it."""
    if not (author.assertion_private_pem and author.assertion_key_id):
        return activity
    context = activity.get("@context", AS_CONTEXT)
    contexts = context if isinstance(context, list) else [context]
    if DATA_INTEGRITY_CONTEXT not in contexts:
        contexts = [*contexts, DATA_INTEGRITY_CONTEXT]
    return integrity.sign({**activity, "@context": contexts}, author.assertion_private_pem,
                          author.assertion_key_id)


def _with_unresolved(reason: str, written: Mentions) -> str:
    """Say which written mentions named nobody, when that is why a post has no reader."""
    if not written.unresolved:
        return reason
    return f"{reason}; nobody was found for {', '.join(written.unresolved)}"


def _unique_tags(tags: list[dict[str, str]]) -> list[dict[str, str]]:
    return list({tag["href"]: tag for tag in tags}.values())


def _check_text(text: str) -> None:
    if not text.strip():
        raise ValidationError("the post is empty; give the text to post")
    if len(text) > MAX_TEXT:
        raise ValidationError(f"the post is {len(text)} characters; the limit is {MAX_TEXT}")


async def _send(
    session: AsyncSession, urls: Urls, author: Actor, group: Actor, post: Post,
    activity: dict[str, Any], *, new_post: bool,
) -> None:
    """A local group relays at once; a remote group gets the activity in its inbox."""
    if group.local:
        session.add(
            OutboundActivity(uri=activity["id"], actor_id=author.id, body=json.dumps(activity))
        )
        if new_post:
            await relay_post(session, urls, group, post, activity, author_uri=author.uri)
        else:
            await relay_activity(session, urls, group, activity, author_uri=author.uri,
                                 post=post)
    else:
        inbox = group.inbox or ""
        parent_author = await _parent_author_inbox(session, post)
        await enqueue(session, author, activity, [i for i in (inbox, parent_author) if i])


async def _parent_author_inbox(session: AsyncSession, post: Post) -> str | None:
    if post.in_reply_to is None:
        return None
    parent = await find_post(session, post.in_reply_to)
    if parent is None:
        return None
    parent_author = await session.get(Actor, parent.author_id)
    if parent_author is None or parent_author.local:
        return None
    return parent_author.shared_inbox or parent_author.inbox


async def _own(session: AsyncSession, author: Actor, post_uri: str) -> tuple[Post, Actor]:
    post = await find_post(session, post_uri)
    if post is None or post.deleted_at is not None or not post.local:
        raise ValidationError(f"{post_uri} is not a post on this instance")
    if post.author_id != author.id:
        raise ValidationError(f"{post_uri} is not {author.username}'s post")
    group = await session.get(Actor, post.group_id) if post.group_id else None
    if group is None:
        raise ValidationError(f"{post_uri} is not in a group")
    return post, group


async def edit_post(
    session: AsyncSession, urls: Urls, author: Actor, post_uri: str, text: str
) -> Post:
    _check_text(text)
    post, group = await _own(session, author, post_uri)
    note = json.loads(post.document)
    # The text before this edit, for the post's edit history (the client API's /history).
    session.add(PostEdit(post_id=post.id, name=post.name, summary=post.summary,
                         content=post.content, edited_at=now()))
    # An edit links the mentions it can without fetching, and never widens the audience:
    # the tags and addressing stay those the post was published with.
    written = await find_mentioned(session, text, domain=author.domain, resolver=None)
    note["content"] = markdown_to_html(text, written.links)
    note["source"] = {"content": text, "mediaType": MARKDOWN}
    note["updated"] = activities.iso(now())
    post.content = note["content"]
    post.updated = now()
    post.document = json.dumps(note)
    update = proven(author, activities.activity(
        "Update", urls.activity(new_id()), author.uri,
        {k: v for k, v in note.items() if k != "@context"}, to=note["to"], cc=note["cc"],
    ))
    await _send(session, urls, author, group, post, update, new_post=False)
    return post


async def delete_post(session: AsyncSession, urls: Urls, author: Actor, post_uri: str) -> Post:
    post, group = await _own(session, author, post_uri)
    note = json.loads(post.document)
    post.deleted_at = now()
    post.content = ""
    tombstone = {"id": post.uri, "type": "Tombstone"}
    delete = proven(author, activities.activity(
        "Delete", urls.activity(new_id()), author.uri, tombstone, to=note["to"], cc=note["cc"],
    ))
    await _send(session, urls, author, group, post, delete, new_post=False)
    if group.local:
        await withdraw_boost(session, urls, group, post, author_uri=author.uri)
    return post
