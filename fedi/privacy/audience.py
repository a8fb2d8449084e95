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
