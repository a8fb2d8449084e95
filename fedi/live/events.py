"""The events a transaction makes (a post stored, edited or deleted, a notification recorded),
and their wire form (a NOTIFY payload)."""

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


@dataclass(frozen=True)
class DeleteEvent:
    """A post that was visible was removed. Ids only: the gate decides who learns of it."""

    post_id: int
    group_id: int | None
    kind: str = "delete"

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True)
class EditEvent:
    """A visible post was edited; `edited` (its `updated` time) tells one edit from the next."""

    post_id: int
    group_id: int | None
    edited: float
    kind: str = "edit"

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True)
class NoticeEvent:
    """A notification was recorded for one local person (the row says what of)."""

    notice_id: int
    recipient_id: int
    kind: str = "notice"

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


LiveEvent = PostEvent | DeleteEvent | EditEvent | NoticeEvent


def decode(payload: str) -> LiveEvent | None:
    """The event in a payload, or None for anything else on the channel."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("kind")
    post_id, group_id = _id(data.get("post_id")), _id(data.get("group_id"))
    if (group_id is None) != (data.get("group_id") is None):
        return None
    if kind == "post":
        thread_id = _id(data.get("thread_id"))
        if post_id is None or thread_id is None:
            return None
        return PostEvent(post_id=post_id, thread_id=thread_id, group_id=group_id)
    if kind == "delete":
        return DeleteEvent(post_id=post_id, group_id=group_id) if post_id is not None else None
    if kind == "edit":
        edited = data.get("edited")
        if post_id is None or not isinstance(edited, int | float) or isinstance(edited, bool):
            return None
        return EditEvent(post_id=post_id, group_id=group_id, edited=float(edited))
    if kind == "notice":
        notice_id, recipient_id = _id(data.get("notice_id")), _id(data.get("recipient_id"))
        if notice_id is None or recipient_id is None:
            return None
        return NoticeEvent(notice_id=notice_id, recipient_id=recipient_id)
    return None


def _id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
