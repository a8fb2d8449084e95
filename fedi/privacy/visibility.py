"""Post visibility and reply rules, and how each maps to ActivityPub addressing (pure).

`public` posts are listed and visible to anyone; `unlisted` are visible to anyone but kept
out of listings; `members` to the group's members; `moderators` to its moderators (and the
author); `mentioned` to the people mentioned; `circle` to a named list of people.
bto/bcc are never used.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from fedi.activitypub.vocab import PUBLIC, is_public
from fedi.errors import ValidationError


class Visibility(StrEnum):
    PUBLIC = "public"
    UNLISTED = "unlisted"
    MEMBERS = "members"
    MODERATORS = "moderators"
    MENTIONED = "mentioned"
    CIRCLE = "circle"

    @property
    def open_to_anyone(self) -> bool:
        return self in (Visibility.PUBLIC, Visibility.UNLISTED)

    @property
    def has_named_audience(self) -> bool:
        """Visible to a fixed list of people, stored with the post."""
        return self in (Visibility.MENTIONED, Visibility.CIRCLE, Visibility.MODERATORS)


class ReplyPolicy(StrEnum):
    ANYONE = "anyone"
    MEMBERS = "members"
    MENTIONED = "mentioned"
    NOBODY = "nobody"
    # Members reply at once; anyone else's reply waits for a moderator.
    APPROVAL = "approval"


class GroupPrivacy(StrEnum):
    PUBLIC = "public"  # listed; posts public by default
    PRIVATE = "private"  # join by approval or invite; posts members-only at most
    HIDDEN = "hidden"  # private, not listed anywhere, invite only


# How far each visibility reaches, for "a reply is never more visible than its parent".
_REACH = {
    Visibility.PUBLIC: 3, Visibility.UNLISTED: 2, Visibility.MEMBERS: 1,
    Visibility.MODERATORS: 0, Visibility.MENTIONED: 0, Visibility.CIRCLE: 0,
}


def parse_visibility(raw: str) -> tuple[Visibility, str | None]:
    """'members' → (MEMBERS, None); 'circle:friends' → (CIRCLE, 'friends')."""
    kind, _, name = raw.partition(":")
    try:
        visibility = Visibility(kind.strip().lower())
    except ValueError:
        allowed = ", ".join(v.value for v in Visibility)
        raise ValidationError(f"unknown visibility {raw!r}; use one of {allowed} "
                              "(circle as circle:NAME)") from None
    if (visibility is Visibility.CIRCLE) != bool(name.strip()):
        raise ValidationError("a circle post names its circle: --visibility circle:NAME")
    return visibility, name.strip() or None


def parse_reply_policy(raw: str) -> ReplyPolicy:
    try:
        return ReplyPolicy(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in ReplyPolicy)
        raise ValidationError(f"unknown reply rule {raw!r}; use one of {allowed}") from None


def clamp_to_parent(requested: Visibility, parent: Visibility) -> Visibility:
    """A reply never reaches further than its parent; a narrower request is kept."""
    if _REACH[requested] <= _REACH[parent]:
        return requested
    return parent


def max_for_group(privacy: GroupPrivacy) -> Visibility:
    return Visibility.PUBLIC if privacy is GroupPrivacy.PUBLIC else Visibility.MEMBERS


def default_for_group(privacy: GroupPrivacy, configured: str | None) -> Visibility:
    """What a new post in the group is when its author does not say: the group's chosen
    default where its privacy still allows it, else the widest the privacy allows."""
    if configured:
        try:
            chosen = Visibility(configured)
        except ValueError:
            chosen = None
        if chosen is not None and not chosen.has_named_audience and not (
            privacy is not GroupPrivacy.PUBLIC and chosen.open_to_anyone
        ):
            return chosen
    return max_for_group(privacy)


def check_allowed_in_group(visibility: Visibility, privacy: GroupPrivacy) -> None:
    if privacy is not GroupPrivacy.PUBLIC and visibility.open_to_anyone:
        raise ValidationError(
            f"this group is {privacy.value}: posts are members-only at most, not {visibility}"
        )


def addressing(
    visibility: Visibility, *, group: str, followers: str, audience: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """to/cc for a post in a group. Named audiences are addressed one by one."""
    named = sorted(set(audience))
    if visibility is Visibility.PUBLIC:
        return [PUBLIC, group], [followers]
    if visibility is Visibility.UNLISTED:
        return [group, followers], [PUBLIC]
    if visibility is Visibility.MEMBERS:
        return [group, followers], []
    # Named people only. The group is named by `audience`, not in to/cc: a server that saw
    # the group in cc would take the post for a members' post.
    return named, []


def visibility_from_addressing(
    to: Iterable[str], cc: Iterable[str], *, group: str, followers: str
) -> Visibility:
    """Read a remote post's visibility the way its author's server meant it."""
    to_list, cc_list = list(to), list(cc)
    if any(is_public(uri) for uri in to_list):
        return Visibility.PUBLIC
    if any(is_public(uri) for uri in cc_list):
        return Visibility.UNLISTED
    # Addressed to the group (a followers-only or direct post that names it): its members.
    if group in to_list + cc_list or followers in to_list + cc_list:
        return Visibility.MEMBERS
    return Visibility.MENTIONED
