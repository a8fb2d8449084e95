"""The dispatch table: activity type → handler."""

from __future__ import annotations

from fedi.federation.announced import handle_announce
from fedi.federation.following import handle_follow_response
from fedi.groups.membership import handle_follow, handle_undo
from fedi.handlers import Handler

HANDLERS: dict[str, Handler] = {
    "Follow": handle_follow,
    "Undo": handle_undo,
    "Accept": handle_follow_response,
    "Reject": handle_follow_response,
    "Announce": handle_announce,
}
