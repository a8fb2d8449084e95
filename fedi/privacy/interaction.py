"""Reply rules as the fediverse reads them: GoToSocial's interactionPolicy and FEP-5624."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fedi.activitypub.vocab import PUBLIC
from fedi.privacy.visibility import ReplyPolicy


def interaction_policy(
    policy: ReplyPolicy, *, author: str, group: str, followers: str, mentioned: Iterable[str],
    public: bool,
) -> dict[str, Any]:
    """The `interactionPolicy` object (GoToSocial) for a post."""
    people = sorted(set(mentioned))
    reply: dict[str, list[str]]
    if policy is ReplyPolicy.ANYONE:
        reply = {"automaticApproval": [PUBLIC]}
    elif policy is ReplyPolicy.MEMBERS:
        reply = {"automaticApproval": [author, group, followers]}
    elif policy is ReplyPolicy.APPROVAL:
        reply = {"automaticApproval": [author, group, followers], "manualApproval": [PUBLIC]}
    elif policy is ReplyPolicy.MENTIONED:
        reply = {"automaticApproval": [author, *people]}
    else:
        reply = {"automaticApproval": [author]}
    everyone = [PUBLIC] if public else [author, followers]
    return {
        "canReply": reply,
        "canLike": {"automaticApproval": everyone},
        "canAnnounce": {"automaticApproval": everyone if public else [author]},
    }


def can_reply_property(policy: ReplyPolicy, *, author: str, followers: str) -> str:
    """FEP-5624 `canReply`: who may reply, as one collection or actor."""
    if policy in (ReplyPolicy.ANYONE, ReplyPolicy.APPROVAL):
        return PUBLIC
    if policy is ReplyPolicy.MEMBERS:
        return followers
    return author
