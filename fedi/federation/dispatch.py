"""The dispatch table: activity type → handler."""

from __future__ import annotations

from fedi.federation.announced import handle_announce
from fedi.federation.following import handle_follow_response
from fedi.federation.remote_moderation import (
    handle_add,
    handle_block,
    handle_delete,
    handle_lock,
    handle_remove,
    handle_undo,
)
from fedi.federation.reporting import handle_flag
from fedi.groups.inbound import handle_create, handle_reaction, handle_update
from fedi.groups.membership import handle_follow
from fedi.handlers import Handler

HANDLERS: dict[str, Handler] = {
    "Follow": handle_follow,
    "Undo": handle_undo,
    "Accept": handle_follow_response,
    "Reject": handle_follow_response,
    "Announce": handle_announce,
    "Create": handle_create,
    "Update": handle_update,
    "Delete": handle_delete,
    "Like": handle_reaction,
    "Dislike": handle_reaction,
    "EmojiReact": handle_reaction,
    "Flag": handle_flag,
    # Moderators acting from their own servers (FEP-1b12, Lemmy).
    "Block": handle_block,
    "Lock": handle_lock,
    "Add": handle_add,
    "Remove": handle_remove,
}
