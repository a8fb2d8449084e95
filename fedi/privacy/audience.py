"""The one place that turns recipients into inboxes.

Followers are collapsed to shared inboxes: one POST per remote server, not per person.
Local recipients never produce an inbox (local fan-out needs no HTTP).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipient:
    uri: str
    inbox: str | None
    shared_inbox: str | None
    local: bool


def delivery_inboxes(recipients: Iterable[Recipient], *, exclude: Iterable[str] = ()) -> list[str]:
    """Inboxes for recipients (deduplicated, shared inbox preferred), in a stable order."""
    excluded = set(exclude)
    inboxes: dict[str, None] = {}
    for recipient in recipients:
        if recipient.local or recipient.uri in excluded:
            continue
        target = recipient.shared_inbox or recipient.inbox
        if target:
            inboxes[target] = None
    return list(inboxes)


@dataclass(frozen=True)
class Member:
    """A group member as the relay sees them."""

    recipient: Recipient
    threaded: bool  # their server shows threads (see groups.kinds)
    participant: bool  # they posted in the thread at hand
    wants_all: bool  # they asked for every reply


@dataclass(frozen=True)
class RelayTargets:
    activity_inboxes: list[str]  # get Announce(activity): threaded servers
    object_inboxes: list[str]  # get Announce(object): microblogs, as a boost


def relay_targets(
    members: Iterable[Member], *, is_reply: bool, exclude: Iterable[str] = ()
) -> RelayTargets:
    """Who receives a relayed post (the no-flood rule).

    A new thread goes to every member. A reply goes to every threaded server, but to a
    microblog server only if a member there took part in the thread or asked for everything:
    microblogs show a boost to all of that server's followers of the group, so the decision
    is per server, and a server with no such member gets no boost of the reply.
    """
    excluded = set(exclude)
    threaded: list[Recipient] = []
    microblog: list[Recipient] = []
    for member in members:
        if member.recipient.uri in excluded:
            continue
        if member.threaded:
            threaded.append(member.recipient)
        elif not is_reply or member.participant or member.wants_all:
            microblog.append(member.recipient)
    activity_inboxes = delivery_inboxes(threaded)
    taken = set(activity_inboxes)
    object_inboxes = [i for i in delivery_inboxes(microblog) if i not in taken]
    return RelayTargets(activity_inboxes, object_inboxes)
