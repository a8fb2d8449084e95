"""An independent statement of who may see a post, written from the issue's words rather
than from fedi.privacy.access, so the property tests compare two readings of the rule."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("anonymous", "outsider", "member", "moderator", "banned", "blocked")


@dataclass(frozen=True)
class Spec:
    visibility: str  # public unlisted members moderators mentioned circle
    author: str  # an actor name
    audience: frozenset[str]  # named people (mentioned / circle)
    parent: Spec | None = None


def may_see(spec: Spec, viewer: str | None, role: str) -> bool:
    """viewer: the actor's name (None when anonymous); role: their standing in the group."""
    if role == "blocked":
        return False
    if spec.parent is not None and not may_see(spec.parent, viewer, role):
        return False
    if viewer is not None and viewer == spec.author:
        return True
    if spec.visibility in ("public", "unlisted"):
        return True
    if spec.visibility == "members":
        return role in ("member", "moderator")
    if spec.visibility == "moderators":
        return role == "moderator"
    return viewer is not None and viewer in spec.audience
