"""The one admission decision for a post into a local group: admit, hold, or refuse.

Every door asks here: the inbox (a member's server), the CLI, and later the web and the
client API. `admit` is pure (facts in, a decision out); `judge` gathers the facts of one
proposed post from the database. A local author and a remote one with the same standing
get the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.groups.restrictions import domain_blocked
from fedi.groups.roles import Standing, standing
from fedi.groups.viewers import facts_for, viewer_within
from fedi.privacy.access import PostFacts, Viewer, can_reply, needs_approval
from fedi.store.models import Actor, Group, Post


@dataclass(frozen=True)
class Admitted:
    pass


@dataclass(frozen=True)
class Held:
    """Stored, shown to moderators only, relayed when one approves it."""

    reason: str  # "premoderation" | "reply-approval"


@dataclass(frozen=True)
class Refused:
    reason: str  # said to the author: the CLI's error, the Reject's summary, the page's message


Decision = Admitted | Held | Refused
ADMITTED = Admitted()


@dataclass(frozen=True)
class Proposal:
    """What is known about one post someone wants to put into a group."""

    standing: Standing
    server_blocked: bool  # the group blocks the author's server
    premoderation: bool  # the group holds members' posts for a moderator
    parent: PostFacts | None = None  # the post replied to; None for a new thread
    viewer: Viewer | None = None  # the author as the privacy gate sees them (for replies)
    thread_locked: bool = False


def admit(proposal: Proposal) -> Decision:
    if proposal.standing is Standing.BANNED:
        return Refused("banned from the group")
    if proposal.server_blocked:
        return Refused("the group blocks this server")
    if proposal.parent is not None and proposal.thread_locked:
        return Refused("the thread is locked")
    held: Held | None = None
    if proposal.parent is None:
        # New threads are for members; a reply is judged by its parent's reply rule.
        if not proposal.standing.may_post:
            return Refused("only members may post here")
    else:
        viewer = proposal.viewer or Viewer()
        if not can_reply(proposal.parent, viewer):
            if not needs_approval(proposal.parent, viewer):
                return Refused(f"the post replied to allows replies from "
                               f"{proposal.parent.reply_policy} only")
            held = Held("reply-approval")
    if held is not None:
        return held
    if proposal.premoderation and not proposal.standing.moderates:
        return Held("premoderation")
    return ADMITTED


async def judge(
    session: AsyncSession, group: Actor, config: Group, author: Actor, parent: Post | None
) -> Decision:
    """The decision for `author` posting into the local `group`, replying to `parent`."""
    member = await standing(session, group, author)
    parent_facts: PostFacts | None = None
    viewer: Viewer | None = None
    locked = False
    if parent is not None:
        parent_facts = await facts_for(session, parent)
        viewer = await viewer_within(session, parent_facts, group, author.uri)
        root = await session.get(Post, parent.thread_id) if parent.thread_id else parent
        locked = root is not None and root.locked_at is not None
    return admit(Proposal(
        standing=member,
        server_blocked=await domain_blocked(session, group, author.domain),
        premoderation=config.premoderation,
        parent=parent_facts,
        viewer=viewer,
        thread_locked=locked,
    ))
