"""The event a stored post makes, and its wire form (a NOTIFY payload)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

CHANNEL = "fedi_events"


@dataclass(frozen=True)
class PostEvent:
    """A post became visible to someone. Ids only: the gate decides who may see it."""

    post_id: int
    thread_id: int
    group_id: int | None
    kind: str = "post"

    @property
    def starts_thread(self) -> bool:
        return self.post_id == self.thread_id

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def decode(payload: str) -> PostEvent | None:
    """The event in a payload, or None for anything else on the channel."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") != "post":
        return None
    post_id, thread_id, group_id = (
        _id(data.get("post_id")), _id(data.get("thread_id")), _id(data.get("group_id")))
    if post_id is None or thread_id is None or (group_id is None) != (data.get("group_id") is None):
        return None
    return PostEvent(post_id=post_id, thread_id=thread_id, group_id=group_id)


def _id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
