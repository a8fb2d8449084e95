"""The one gate: may this viewer see this post, may they reply to it (pure).

Every read path (pages, ActivityPub fetches, collections, the client API) and every
delivery asks here. "Forbidden" and "missing" must look the same to the viewer, so callers
answer 404 either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedi.privacy.visibility import ReplyPolicy, Visibility


@dataclass(frozen=True)
class PostFacts:
    author: str
    group: str | None
    visibility: Visibility
    audience: frozenset[str] = frozenset()  # mentioned / circle members / moderators
    reply_policy: ReplyPolicy = ReplyPolicy.MEMBERS
    held: bool = False  # waiting for a moderator (premoderation, reply approval, reports)
    deleted: bool = False
    parent: PostFacts | None = None  # what it replies to, if that is known here


@dataclass(frozen=True)
class Viewer:
    actor: str | None = None  # None: anonymous (an unsigned request, a logged-out browser)
    member_of: frozenset[str] = field(default_factory=frozenset)
    moderator_of: frozenset[str] = field(default_factory=frozenset)
    banned_from: frozenset[str] = field(default_factory=frozenset)
    blocked: bool = False  # the viewer's server is suspended here

    def is_member(self, group: str | None) -> bool:
        return group is not None and group not in self.banned_from and (
            group in self.member_of or group in self.moderator_of
        )

    def moderates(self, group: str | None) -> bool:
        return group is not None and group in self.moderator_of


ANONYMOUS = Viewer()


def can_view(post: PostFacts, viewer: Viewer) -> bool:
    if post.deleted or viewer.blocked:
        return False
    if post.parent is not None and not can_view(post.parent, viewer):
        return False  # a reply is never more visible than what it answers
    if viewer.actor is not None and viewer.actor in (post.author, post.group):
        return True  # the author, and the group that relays it
    if post.held:
        return viewer.moderates(post.group)
    if post.visibility.open_to_anyone:
        return True
    if post.visibility is Visibility.MEMBERS:
        return viewer.is_member(post.group)
    if post.visibility is Visibility.MODERATORS:
        return viewer.moderates(post.group)
    # mentioned / circle: only the named people.
    return viewer.actor is not None and viewer.actor in post.audience


def listed(post: PostFacts) -> bool:
    """Shown in public listings (group pages, outboxes) to people who are not members."""
    return post.visibility is Visibility.PUBLIC and not post.held and not post.deleted


def can_reply(post: PostFacts, viewer: Viewer) -> bool:
    """May the viewer's reply be accepted at once (see needs_approval for the rest)."""
    if not can_view(post, viewer) or viewer.actor is None:
        return False
    if viewer.actor == post.author or viewer.moderates(post.group):
        return True
    if post.group is not None and post.group in viewer.banned_from:
        return False
    policy = post.reply_policy
    if policy is ReplyPolicy.ANYONE:
        return True
    if policy in (ReplyPolicy.MEMBERS, ReplyPolicy.APPROVAL):
        return viewer.is_member(post.group)
    if policy is ReplyPolicy.MENTIONED:
        return viewer.actor in post.audience
    return False


def needs_approval(post: PostFacts, viewer: Viewer) -> bool:
    """A reply a moderator may still let through (policy `approval`)."""
    return (
        post.reply_policy is ReplyPolicy.APPROVAL
        and viewer.actor is not None
        and can_view(post, viewer)
        and not can_reply(post, viewer)
        and not (post.group is not None and post.group in viewer.banned_from)
    )
