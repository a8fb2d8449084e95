"""Export and import the keys of the instance and its local actors (for moving hosts).

The file is JSON, created 0600: per local actor its URI, its RSA key pair (HTTP signatures)
and its Ed25519 assertion key (object integrity proofs). An import changes existing local
actors only, matched by URI, and takes the whole file or nothing: each key must load and
its private half must match its public half, so a damaged file cannot lock an actor out of
the fediverse.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub.integrity import public_multibase
from fedi.activitypub.keys import load_private_key
from fedi.errors import FediError
from fedi.store.models import Actor

FORMAT = "fedi-keys"
FORMAT_VERSION = 1


class KeyFileError(FediError):
    """The key file cannot be written or imported; the reason says what to fix."""


@dataclass(frozen=True)
class ActorKeys:
    uri: str
    key_id: str
    public_key_pem: str
    private_key_pem: str
    assertion_key_id: str | None = None
    assertion_public_key: str | None = None
    assertion_private_pem: str | None = None


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.lower()}"


async def export_keys(session: AsyncSession, base_url: str, target: Path) -> int:
    """Write every local actor's keys to `target` (a new file, mode 0600); return how many."""
    actors = (
        await session.execute(select(Actor).where(Actor.local.is_(True)).order_by(Actor.id))
    ).scalars().all()
    entries = [
        ActorKeys(a.uri, a.key_id, a.public_key_pem, a.private_key_pem, a.assertion_key_id,
                  a.assertion_public_key, a.assertion_private_pem)
        for a in actors if a.key_id and a.public_key_pem and a.private_key_pem
    ]
    if not entries:
        raise KeyFileError("there are no local actors with keys to export; run `fedi serve` "
                           "(or `fedi migrate`) once to create the instance")
    body = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "base_url": base_url,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "actors": [asdict(entry) for entry in entries],
    }
    try:
        handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{target} already exists; choose another file name") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {target} ({exc.strerror})") from None
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(body, out, indent=2)
    return len(entries)


def read_key_file(source: Path, base_url: str) -> list[ActorKeys]:
    """The file's entries, each checked; KeyFileError (naming the actor) otherwise."""
    try:
        body = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"{source} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {source} ({exc.strerror})") from None
    except ValueError:
        raise KeyFileError(f"{source} is not a fedi key file (not JSON)") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise KeyFileError(f"{source} is not a fedi key file (made by `fedi admin export-keys`)")
    if body.get("format_version") != FORMAT_VERSION:
        raise KeyFileError(f"{source} has key file version {body.get('format_version')!r}; "
                           f"this fedi reads version {FORMAT_VERSION}")
    raw = body.get("actors")
    if not isinstance(raw, list) or not raw:
        raise KeyFileError(f"{source} holds no keys")
    return [_entry(item, base_url) for item in raw]


def _entry(item: Any, base_url: str) -> ActorKeys:
    try:
        entry = ActorKeys(**item)
        if not all(isinstance(v, str) for v in (entry.uri, entry.key_id, entry.public_key_pem,
                                                entry.private_key_pem)):
            raise TypeError
    except TypeError:
        raise KeyFileError("an entry of the key file is malformed; the file is damaged") \
            from None
    if _origin(entry.uri) != base_url:
        raise KeyFileError(
            f"the key file has keys for {entry.uri}, which is not under FEDI_BASE_URL="
            f"{base_url}; keys can only be imported by the instance at the same address"
        )
    if not entry.key_id.startswith(entry.uri + "#"):
        raise KeyFileError(f"the key id of {entry.uri} is not the actor's own; the file is "
                           "damaged")
    _check_rsa(entry)
    _check_assertion(entry)
    return entry


def _check_rsa(entry: ActorKeys) -> None:
    try:
        private = load_private_key(entry.private_key_pem)
        public = serialization.load_pem_public_key(entry.public_key_pem.strip().encode("ascii"))
    except (FediError, ValueError, UnicodeEncodeError):
        raise KeyFileError(f"the RSA key of {entry.uri} cannot be loaded; the file is "
                           "damaged") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(serialization.Encoding.DER, spki) != \
            public.public_bytes(serialization.Encoding.DER, spki):
        raise KeyFileError(f"the RSA private and public keys of {entry.uri} do not match; "
                           "the file is damaged")


def _check_assertion(entry: ActorKeys) -> None:
    parts = (entry.assertion_key_id, entry.assertion_public_key, entry.assertion_private_pem)
    if all(part is None for part in parts):
        return
    if not all(isinstance(part, str) for part in parts):
        raise KeyFileError(f"the Ed25519 key of {entry.uri} is incomplete; the file is damaged")
    try:
        private = load_private_key(str(entry.assertion_private_pem))
    except FediError:
        private = None
    if not isinstance(private, Ed25519PrivateKey) or \
            public_multibase(private.public_key()) != entry.assertion_public_key:
        raise KeyFileError(f"the Ed25519 key of {entry.uri} cannot be loaded or does not "
                           "match its public key; the file is damaged")


async def import_keys(session: AsyncSession, entries: list[ActorKeys]) -> int:
    """Give each existing local actor its keys from `entries`; all or nothing."""
    uris = [entry.uri for entry in entries]
    found = {
        actor.uri: actor
        for actor in (
            await session.execute(select(Actor).where(Actor.uri.in_(uris)))
        ).scalars().all()
    }
    missing = [uri for uri in uris if uri not in found or not found[uri].local]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise KeyFileError(
            f"the key file has keys for {missing[0]}{more}, which does not exist here; create "
            "the actors first (or restore a backup), then import; nothing was changed"
        )
    for entry in entries:
        actor = found[entry.uri]
        actor.key_id, actor.public_key_pem = entry.key_id, entry.public_key_pem
        actor.private_key_pem = entry.private_key_pem
        if entry.assertion_private_pem is not None:
            actor.assertion_key_id = entry.assertion_key_id
            actor.assertion_public_key = entry.assertion_public_key
            actor.assertion_private_pem = entry.assertion_private_pem
    return len(entries)
