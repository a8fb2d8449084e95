"""ActivityStreams constants and the helpers that read its loose JSON shapes.

Payloads are treated as plain JSON with known aliases (SECURITY 11): no remote @context is
ever fetched and no JSON-LD processing happens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
PUBLIC_ALIASES = frozenset({PUBLIC, "as:Public", "Public"})
AP_MEDIA_TYPE = "application/activity+json"
LD_MEDIA_TYPE = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'

ACTOR_TYPES = frozenset({"Person", "Group", "Application", "Service", "Organization"})
POST_TYPES = frozenset({"Note", "Page", "Article", "Question"})

CONTEXT: list[Any] = [
    AS_CONTEXT,
    SECURITY_CONTEXT,
    {
        "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
        "sensitive": "as:sensitive",
        "lemmy": "https://join-lemmy.org/ns#",
        "postingRestrictedToMods": "lemmy:postingRestrictedToMods",
        "toot": "http://joinmastodon.org/ns#",
        "featured": {"@id": "toot:featured", "@type": "@id"},
        "discoverable": "toot:discoverable",
        "indexable": "toot:indexable",
    },
]


def id_of(value: Any) -> str | None:
    """The id of a link value: a string, or an object with an `id` (or `href` for Links)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("id", "href"):
            found = value.get(key)
            if isinstance(found, str):
                return found
    return None


def ids(value: Any) -> list[str]:
    """Ids from a field that may be absent, a string, an object, or a list of either."""
    if value is None:
        return []
    items: Iterable[Any] = value if isinstance(value, list) else [value]
    return [found for item in items if (found := id_of(item)) is not None]


def is_public(uri: str) -> bool:
    return uri in PUBLIC_ALIASES


def addressed(document: dict[str, Any]) -> list[str]:
    """Everyone a document names in to/cc/audience, Public normalised to the full IRI."""
    result: list[str] = []
    for key in ("to", "cc", "audience"):
        for uri in ids(document.get(key)):
            result.append(PUBLIC if is_public(uri) else uri)
    return result


def addressees(document: dict[str, Any]) -> list[str]:
    """Who a document is addressed to (to/cc only): `audience` names a context, not readers."""
    return [PUBLIC if is_public(uri) else uri
            for key in ("to", "cc") for uri in ids(document.get(key))]


def first_type(document: dict[str, Any]) -> str | None:
    kind = document.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if isinstance(k, str)), None)
    return kind if isinstance(kind, str) else None
