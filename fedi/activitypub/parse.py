"""Untrusted JSON → typed values. The core never sees a raw remote dict it must trust."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fedi.activitypub import jsonsafe
from fedi.activitypub.addresses import normalise_or_none
from fedi.activitypub.vocab import ACTOR_TYPES, first_type, id_of, ids
from fedi.errors import ValidationError

MAX_URL_LENGTH = 2048
# Characters a browser strips from a URL (C0 controls, space, DEL); one regex search is a
# tenth of a Python loop over the characters, and every id of every activity passes here.
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def is_http_url(value: object) -> bool:
    """An absolute http(s) URL with a host, and nothing a browser would read otherwise.

    Every URL taken from a remote document passes here before it is stored or rendered
    (SECURITY 20): `javascript://host/…`, `data:`, `file:` and schemeless values fail, even
    when their "host" looks right. Whitespace and control characters are refused outright,
    since browsers strip them and could see another scheme than we checked."""
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        return False
    if _CONTROL_OR_SPACE.search(value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https") and bool(parts.hostname)
        and "@" not in parts.netloc and "\\" not in value
    )


def http_url_or_none(value: object) -> str | None:
    """An optional URL field (`url`, icons, links): kept only if it is http(s)."""
    return value if is_http_url(value) and isinstance(value, str) else None


# Keys whose string values (or list items, or objects' ids/hrefs) are links in AS2 documents.
LINK_KEYS = frozenset({
    "id", "href", "url", "inReplyTo", "context", "conversation", "replies", "likes", "shares",
    "icon", "image", "attachment", "tag", "preview", "attributedTo", "actor", "object",
    "target", "origin", "instrument", "quoteUrl", "quoteUri", "_misskey_quote", "quote",
})


def scrub_links(value: Any, key: str | None = None) -> Any:
    """A copy of a remote document without any link that is not http(s) (SECURITY 20).

    A stored document is served again (featured, collections) and read by pages, so a
    `javascript:` or `data:` url, icon, attachment or tag href is dropped before storing."""
    if isinstance(value, dict):
        return {
            k: v for k, item in value.items()
            if (v := scrub_links(item, k)) is not _DROP
        }
    if isinstance(value, list):
        return [v for item in value if (v := scrub_links(item, key)) is not _DROP]
    if isinstance(value, str) and key in LINK_KEYS and not is_http_url(value):
        return _DROP
    return value


_DROP = object()


def _http_url(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a URL string")
    if not is_http_url(value):
        raise ValidationError(f"{what} {value[:200]!r} is not an http(s) URL")
    return value


def host_of(url: str) -> str:
    """host[:port] of a URL in its one spelling (SECURITY 12, 22), as domain policy keys are;
    '' for a URL that is not http(s), so a `javascript://host/` id shares no host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https"):
        return ""
    netloc = parts.netloc.rpartition("@")[2].lower()
    return normalise_or_none(netloc) or netloc


@dataclass(frozen=True)
class RemoteActor:
    id: str
    type: str
    username: str
    domain: str
    name: str | None
    summary: str | None
    inbox: str
    shared_inbox: str | None
    outbox: str | None
    followers: str | None
    url: str | None
    key_id: str
    public_key_pem: str
    manually_approves_followers: bool
    # FEP-521a: the Ed25519 Multikey that signs the actor's object integrity proofs.
    assertion_key_id: str | None = None
    assertion_public_key: str | None = None


def _pick_key(value: Any, key_id: str | None) -> Any:
    keys = value if isinstance(value, list) else [value]
    keys = [k for k in keys if isinstance(k, dict) and isinstance(k.get("publicKeyPem"), str)]
    if key_id is not None:
        return next((k for k in keys if k.get("id") == key_id), None)
    return keys[0] if keys else None


def parse_actor(doc: dict[str, Any], key_id: str | None = None) -> RemoteActor:
    """Parse an actor document; with key_id, that key must be one of the actor's keys."""
    actor_id = _http_url(doc.get("id"), "actor id")
    kind = first_type(doc)
    if kind not in ACTOR_TYPES:
        raise ValidationError(f"{actor_id} is a {kind!r}, not an actor")
    inbox = _http_url(doc.get("inbox"), "actor inbox")
    key = _pick_key(doc.get("publicKey"), key_id)
    if key is None and key_id is not None:
        raise ValidationError(f"actor {actor_id} does not list the key {key_id}")
    if not isinstance(key, dict) or not isinstance(key.get("publicKeyPem"), str):
        raise ValidationError(f"actor {actor_id} has no publicKey.publicKeyPem")
    key_id = _http_url(key.get("id"), "publicKey.id")
    owner = id_of(key.get("owner")) or actor_id
    if owner != actor_id:
        raise ValidationError(f"key {key_id} is owned by {owner}, not by {actor_id}")
    # The key and the actor must live on the same host, or any host could claim any key.
    if host_of(key_id) != host_of(actor_id):
        raise ValidationError(f"key {key_id} is not on the actor's host")
    endpoints = doc.get("endpoints")
    shared = endpoints.get("sharedInbox") if isinstance(endpoints, dict) else None
    if shared is not None:
        shared = _http_url(shared, "sharedInbox")
        if host_of(shared) != host_of(actor_id):
            shared = None
    username = doc.get("preferredUsername")
    if not isinstance(username, str) or not username:
        username = urlsplit(actor_id).path.rstrip("/").rsplit("/", 1)[-1] or actor_id
    return RemoteActor(
        id=actor_id,
        type=kind,
        username=username,
        domain=host_of(actor_id),
        name=doc.get("name") if isinstance(doc.get("name"), str) else None,
        summary=doc.get("summary") if isinstance(doc.get("summary"), str) else None,
        inbox=inbox,
        shared_inbox=shared,
        outbox=http_url_or_none(id_of(doc.get("outbox"))),
        followers=http_url_or_none(id_of(doc.get("followers"))),
        # The profile link is rendered on pages: the first http(s) one, never javascript: etc.
        url=next((u for u in ids(doc.get("url")) if is_http_url(u)), None),
        key_id=key_id,
        public_key_pem=key["publicKeyPem"],
        manually_approves_followers=doc.get("manuallyApprovesFollowers") is True,
        **_assertion_key(doc.get("assertionMethod"), actor_id),
    )


def _assertion_key(value: Any, actor_id: str) -> dict[str, str | None]:
    """The actor's first Ed25519 Multikey (FEP-521a), controlled by it and on its host."""
    for entry in value if isinstance(value, list) else [value]:
        if not isinstance(entry, dict) or first_type(entry) != "Multikey":
            continue
        key_id, multibase = entry.get("id"), entry.get("publicKeyMultibase")
        if (isinstance(key_id, str) and urlsplit(key_id).scheme in ("http", "https")
                and host_of(key_id) == host_of(actor_id)
                and id_of(entry.get("controller")) == actor_id
                and isinstance(multibase, str) and multibase.startswith("z6Mk")):
            return {"assertion_key_id": key_id, "assertion_public_key": multibase}
    return {"assertion_key_id": None, "assertion_public_key": None}


@dataclass(frozen=True)
class IncomingActivity:
    id: str
    type: str
    actor: str
    object_id: str | None
    object: dict[str, Any] | None  # the embedded object, if any
    document: dict[str, Any]


def parse_activity_body(body: bytes | str) -> IncomingActivity:
    """The inbox and the worker both read bodies here, so what one accepts the other reads."""
    try:
        doc = jsonsafe.loads_object(body)
    except ValidationError as exc:
        raise ValidationError(f"body refused: {exc.reason}") from None
    return parse_activity(doc)


def parse_activity(doc: dict[str, Any]) -> IncomingActivity:
    activity_id = _http_url(doc.get("id"), "activity id")
    kind = first_type(doc)
    if kind is None:
        raise ValidationError("activity has no type")
    actor = id_of(doc.get("actor"))
    actor = _http_url(actor, "activity actor")
    # An activity can only be published by its actor's host (SECURITY 4).
    if host_of(activity_id) != host_of(actor):
        raise ValidationError(f"activity {activity_id} is not on its actor's host {host_of(actor)}")
    obj = doc.get("object")
    return IncomingActivity(
        id=activity_id,
        type=kind,
        actor=actor,
        object_id=id_of(obj),
        object=obj if isinstance(obj, dict) else None,
        document=doc,
    )
