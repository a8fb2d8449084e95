"""Build activities (pure: ids and values in, JSON out)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def follow(activity_id: str, actor: str, target: str) -> dict[str, Any]:
    return {"@context": AS_CONTEXT, "id": activity_id, "type": "Follow", "actor": actor,
            "object": target, "to": [target]}


def respond(
    kind: str, activity_id: str, actor: str, request: dict[str, Any], to: str
) -> dict[str, Any]:
    """Accept or Reject an activity, embedding it whole so the peer needs no fetch."""
    embedded = {k: v for k, v in request.items() if k != "@context"}
    return {"@context": AS_CONTEXT, "id": activity_id, "type": kind, "actor": actor,
            "object": embedded, "to": [to]}


def undo(activity_id: str, actor: str, undone: dict[str, Any]) -> dict[str, Any]:
    embedded = {k: v for k, v in undone.items() if k != "@context"}
    return {"@context": AS_CONTEXT, "id": activity_id, "type": "Undo", "actor": actor,
            "object": embedded, "to": embedded.get("to", [])}


def create(activity_id: str, obj: dict[str, Any]) -> dict[str, Any]:
    embedded = {k: v for k, v in obj.items() if k != "@context"}
    activity: dict[str, Any] = {
        "@context": obj.get("@context", AS_CONTEXT),
        "id": activity_id,
        "type": "Create",
        "actor": obj["attributedTo"],
        "published": obj.get("published"),
        "to": obj.get("to", []),
        "cc": obj.get("cc", []),
        "object": embedded,
    }
    if "audience" in obj:
        activity["audience"] = obj["audience"]
    return activity


def announce(
    activity_id: str, group: str, wrapped: dict[str, Any] | str, *, to: list[str],
    cc: list[str], published: float,
) -> dict[str, Any]:
    """FEP-1b12: the group wraps the member's activity unchanged (or names a bare object).

    An activity with an integrity proof keeps its @context: the proof covers it (FEP-8b32)."""
    embedded: dict[str, Any] | str = (
        {k: v for k, v in wrapped.items() if k != "@context" or "proof" in wrapped}
        if isinstance(wrapped, dict) else wrapped
    )
    return {"@context": AS_CONTEXT, "id": activity_id, "type": "Announce", "actor": group,
            "object": embedded, "to": to, "cc": cc, "audience": group,
            "published": iso(published)}


def activity(
    kind: str, activity_id: str, actor: str, obj: dict[str, Any] | str, *, to: list[str],
    cc: list[str] | None = None, target: str | None = None,
) -> dict[str, Any]:
    """Any other activity (Add, Remove, Block, Update, Delete…)."""
    built: dict[str, Any] = {"@context": AS_CONTEXT, "id": activity_id, "type": kind,
                             "actor": actor, "object": obj, "to": to}
    if cc:
        built["cc"] = cc
    if target is not None:
        built["target"] = target
    return built


def public_addressing(group: str, followers: str) -> tuple[list[str], list[str]]:
    return [PUBLIC, group], [followers]
