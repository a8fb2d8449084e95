"""What a group relays, and to whom (FEP-1b12), within each post's visibility.

Public and unlisted posts go out as the group's Announce of the member's activity, unchanged;
microblogs get the group's boost of the post instead, under the no-flood rule.

Non-public posts (members, moderators, mentioned, circle) reach only people the privacy gate
lets see them. Threaded servers get the Announce with the post's own narrow addressing.
Microblogs cannot take those: Mastodon accepts an Announce only of a public or unlisted
status (or a self-boost), so they get the group's own copy of the post instead — a Note
attributed to the group, addressed to the group's followers (members) or to the named people;
Mastodon shows a followers-only post to the author's followers, here the group's members.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.parse import is_http_url
from fedi.activitypub.vocab import AS_CONTEXT
from fedi.delivery.enqueue import enqueue
from fedi.groups.kinds import is_threaded
from fedi.groups.roles import ROSTER_TABLES, roster
from fedi.groups.threads import thread_participants
from fedi.groups.viewers import facts_for
from fedi.privacy.access import PostFacts, can_view
from fedi.privacy.audience import Member, Recipient, relay_targets
from fedi.privacy.visibility import Visibility, addressing
from fedi.store.memo import remembered
from fedi.store.models import Actor, Follow, Host, Post, now
from fedi.urls import Urls, new_id


async def members(session: AsyncSession, group: Actor, thread_id: int | None) -> list[Member]:
    """The group's members as the relay sees them; who took part in the thread `thread_id`
    (None: nobody, for what is not a reply, where that does not count)."""
    async def load() -> list[tuple[int, Recipient, bool, str | None]]:
        # Columns, not Actor objects: every relayed activity reads all members.
        rows = await session.execute(
            select(Actor.id, Actor.uri, Actor.inbox, Actor.shared_inbox, Actor.local,
                   Follow.wants_all_replies, Host.software)
            .join(Follow, Follow.follower_id == Actor.id)
            .outerjoin(Host, Host.host == Actor.domain)
            .where(Follow.target_id == group.id, Follow.state == "accepted")
        )
        return [(actor_id, Recipient(uri, inbox, shared_inbox, local), wants_all, software)
                for actor_id, uri, inbox, shared_inbox, local, wants_all, software in rows.all()]

    found = await remembered(session, ("members", group.id), _MEMBER_TABLES, load)
    participants = await thread_participants(session, thread_id) if thread_id else set()
    return [
        Member(recipient, threaded=is_threaded(software), participant=actor_id in participants,
               wants_all=wants_all)
        for actor_id, recipient, wants_all, software in found
    ]


_MEMBER_TABLES = frozenset({"follows", "actors", "hosts"})
_AUDIENCE_TABLES = _MEMBER_TABLES | ROSTER_TABLES


async def _named_people(session: AsyncSession, uris: Iterable[str]) -> list[Member]:
    """People a post is addressed to by name; their personal inboxes, never shared ones."""
    rows = await session.execute(
        select(Actor, Host.software)
        .outerjoin(Host, Host.host == Actor.domain)
        .where(Actor.uri.in_(list(uris)))
    )
    return [
        Member(Recipient(actor.uri, actor.inbox, None, actor.local),
               threaded=is_threaded(software), participant=True, wants_all=True)
        for actor, software in rows.all()
    ]


def _addressing_for(group: Actor, facts: PostFacts) -> tuple[list[str], list[str]]:
    return addressing(
        facts.visibility, group=group.uri, followers=Urls.followers(group.uri),
        audience=facts.audience,
    )


async def _admitted(session: AsyncSession, group: Actor, facts: PostFacts) -> PostFacts:
    """The facts with the named audience cut to those the gate admits (for addressing)."""
    if not facts.visibility.has_named_audience:
        return facts
    standing = await roster(session, group)
    return replace(facts, audience=frozenset(
        uri for uri in facts.audience if can_view(facts, standing.viewer(uri))
    ))


async def _audience(
    session: AsyncSession, group: Actor, post: Post, facts: PostFacts, *, is_reply: bool
) -> list[Member]:
    """Everyone who may receive this post: candidates filtered through the privacy gate,
    each judged by their real standing in the group (member, moderator, banned)."""
    # Who took part in the thread counts only for a reply (relay_targets).
    thread = post.thread_id if is_reply else None

    async def judged(judged_facts: PostFacts) -> list[tuple[Member, bool]]:
        """Each candidate, and whether the gate lets them see a post with these facts."""
        standing = await roster(session, group)
        if judged_facts.visibility is Visibility.MODERATORS:
            candidates = await _named_people(session, standing.moderators | judged_facts.audience)
        elif judged_facts.visibility.has_named_audience:
            candidates = await _named_people(session, judged_facts.audience)
        else:
            candidates = await members(session, group, thread)
        return [(m, can_view(judged_facts, standing.viewer(m.recipient.uri)))
                for m in candidates]

    if thread is not None:  # the thread's participants change with every reply
        return [m for m, seen in await judged(facts) if seen]
    # In a batch, posts alike have the same audience, whoever wrote them: the gate's answer
    # depends on the author for the author alone (can_view), so the memo keeps the answers
    # for a post by nobody, and the author's own is asked here. New threads by 100 members
    # then judge the members once, not once per author (bench.processing).
    by_nobody = replace(facts, author="")
    found = await remembered(session, ("audience", group.id, by_nobody), _AUDIENCE_TABLES,
                             lambda: judged(by_nobody))
    audience = []
    for m, seen in found:
        if not seen and m.recipient.uri == facts.author:
            seen = can_view(facts, (await roster(session, group)).viewer(facts.author))
        if seen:
            audience.append(m)
    return audience


async def relay_post(
    session: AsyncSession, urls: Urls, group: Actor, post: Post, activity: dict[str, Any],
    *, author_uri: str,
) -> None:
    """Send a new post (thread starter or reply) to the members who should get it."""
    facts = await facts_for(session, post)
    if facts.held:
        return  # waits for a moderator; relayed on approval
    is_reply = post.in_reply_to is not None
    audience = await _audience(session, group, post, facts, is_reply=is_reply)
    targets = relay_targets(audience, is_reply=is_reply, exclude=[author_uri])
    to, cc = _addressing_for(group, await _admitted(session, group, facts))
    published = now()
    announce = activities.announce(
        urls.activity(new_id()), group.uri, activity, to=to, cc=cc, published=published
    )
    boost = None
    if targets.object_inboxes and facts.visibility.open_to_anyone:
        boost = activities.announce(
            urls.activity(new_id()), group.uri, post.uri, to=to, cc=cc, published=published
        )
        # Set before the statements below: a post stored in this transaction then gets it
        # in the one UPDATE that also sets its thread (bench.processing).
        post.boost_uri = boost["id"]
    # Stored even with no remote member: it is the group's outbox.
    await enqueue(session, group, announce, targets.activity_inboxes)
    if not targets.object_inboxes:
        return
    if boost is not None:
        await enqueue(session, group, boost, targets.object_inboxes)
    else:
        copy = await group_copy(session, urls, group, post, facts)
        post.copy_uri = copy["id"]
        create = activities.create(urls.activity(new_id()), copy)
        await enqueue(session, group, create, targets.object_inboxes)


async def group_copy(
    session: AsyncSession, urls: Urls, group: Actor, post: Post, facts: PostFacts
) -> dict[str, Any]:
    """The group's own copy of a non-public post, for servers that only show boosts."""
    author = await session.get(Actor, post.author_id)
    to, cc = _addressing_for(group, facts)
    if facts.visibility is Visibility.MEMBERS:
        # Mastodon: a Create addressed to the author's followers is a followers-only post.
        to, cc = [Urls.followers(group.uri)], []
    byline = ""
    if author is not None:
        # Remote names and links go into HTML here: escaped, and the link only if http(s).
        link = author.url if author.url and is_http_url(author.url) else author.uri
        byline = (f'<p><a href="{html.escape(link)}">'
                  f"@{html.escape(author.username)}@{html.escape(author.domain)}</a>:</p>")
    copy: dict[str, Any] = {
        "@context": AS_CONTEXT,
        "id": f"{urls.base}/copies/{post.id}",
        "type": "Note",
        "attributedTo": group.uri,
        "content": byline + post.content,
        "published": activities.iso(post.published),
        "to": to,
        "cc": cc,
        "audience": group.uri,
        "url": post.uri,
        "context": post.context,
        "tag": [{"type": "Mention", "href": uri} for uri in sorted(facts.audience)],
    }
    if post.in_reply_to:
        parent = (
            await session.execute(select(Post).where(Post.uri == post.in_reply_to))
        ).scalar_one_or_none()
        copy["inReplyTo"] = (parent.copy_uri or parent.uri) if parent else post.in_reply_to
    if post.name:
        copy["name"] = post.name
    return copy


async def relay_activity(
    session: AsyncSession, urls: Urls, group: Actor, activity: dict[str, Any],
    *, author_uri: str, post: Post,
) -> None:
    """Announce an edit, deletion or reaction to the post's audience on threaded servers.

    Microblogs cannot take these from the group, except for the group's own copy of a
    non-public post, which the group updates or deletes itself."""
    # A Delete goes to the people who could see the post before it was deleted.
    facts = replace(await facts_for(session, post), deleted=False)
    if facts.held:
        return
    audience = await _audience(session, group, post, facts, is_reply=False)
    targets = relay_targets(audience, is_reply=False, exclude=[author_uri])
    to, cc = _addressing_for(group, facts)
    announce = activities.announce(
        urls.activity(new_id()), group.uri, activity, to=to, cc=cc, published=now()
    )
    await enqueue(session, group, announce, targets.activity_inboxes)
    if post.copy_uri and targets.object_inboxes and activity.get("type") in ("Update", "Delete"):
        if activity["type"] == "Update":
            copy = await group_copy(session, urls, group, post, facts)
            change = activities.activity(
                "Update", urls.activity(new_id()), group.uri,
                {k: v for k, v in copy.items() if k != "@context"}, to=copy["to"], cc=copy["cc"],
            )
        else:
            change = activities.activity(
                "Delete", urls.activity(new_id()), group.uri,
                {"id": post.copy_uri, "type": "Tombstone"}, to=to, cc=cc,
            )
        await enqueue(session, group, change, targets.object_inboxes)


async def withdraw_boost(
    session: AsyncSession, urls: Urls, group: Actor, post: Post, *, author_uri: str
) -> None:
    """Undo the group's boost of a deleted post, so microblogs drop it too."""
    if post.boost_uri is None:
        return
    targets = relay_targets(
        await members(session, group, None), is_reply=False, exclude=[author_uri]
    )
    if not targets.object_inboxes:
        return
    to, cc = activities.public_addressing(group.uri, Urls.followers(group.uri))
    boost = {"id": post.boost_uri, "type": "Announce", "actor": group.uri, "object": post.uri,
             "to": to, "cc": cc}
    undo = activities.undo(urls.activity(new_id()), group.uri, boost)
    await enqueue(session, group, undo, targets.object_inboxes)


async def announce_to_members(
    session: AsyncSession, group: Actor, activity: dict[str, Any]
) -> None:
    """The group's own activities (Add/Remove of moderators, Update of its profile)."""
    targets = relay_targets(await members(session, group, None), is_reply=False)
    await enqueue(session, group, activity, targets.activity_inboxes + targets.object_inboxes)
