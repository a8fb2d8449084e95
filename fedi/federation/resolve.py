"""Find remote actors and their keys: database first, then a signed fetch as the instance actor.

Keys are cached in memory (key id → owner and PEM); a key that fails to verify is refetched
at most once per REFRESH_INTERVAL per actor (SECURITY 9), so a flood of bad signatures cannot
turn us into a fetch amplifier.

A key id names an actor's `publicKey` (RSA, as everyone signs), its FEP-521a `assertionMethod`
Ed25519 Multikey, or a CryptographicKey document of its own whose owner publishes that same
Ed25519 key as its Multikey (how fedi names its RFC 9421 `ed25519` key, Urls.ed25519_key_id).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi.activitypub.addresses import normalise_or_none
from fedi.activitypub.client import FederationClient, parse_handle
from fedi.activitypub.keys import SigningKey, is_multikey, multikey_public_pem
from fedi.activitypub.parse import RemoteActor, host_of, is_http_url, parse_actor
from fedi.activitypub.vocab import ACTOR_TYPES, first_type, id_of
from fedi.errors import FetchError, SignatureError, ValidationError
from fedi.federation.fetch_later import network
from fedi.store.memo import memo_of
from fedi.store.models import Actor, Host, now
from fedi.urls import Urls

REFRESH_INTERVAL = 60.0
KEY_CACHE_SIZE = 10_000
SOFTWARE_TTL = 24 * 3600.0
NODEINFO_REL = "http://nodeinfo.diaspora.software/ns/schema/2."

# Domain policy for outbound fetches: None allows the host, a string is why it is refused.
HostPolicy = Callable[[str], Awaitable[str | None]]


_ACTORS = frozenset({"actors"})


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    owner: str
    public_key_pem: str


class ActorResolver:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: FederationClient,
        urls: Urls,
        instance_key: Callable[[], SigningKey],
        clock: Callable[[], float] = time.time,
        allow_http: bool = False,
        host_policy: HostPolicy | None = None,
    ) -> None:
        self._allow_http = allow_http
        self._host_policy = host_policy
        self._sessionmaker = sessionmaker
        self._client = client
        self._urls = urls
        self._instance_key = instance_key
        self._clock = clock
        self._keys: OrderedDict[str, KeyInfo] = OrderedDict()
        self._fetching: dict[str, asyncio.Future[KeyInfo]] = {}
        self._last_refresh: dict[str, float] = {}

    async def _check_host(self, url_or_host: str) -> None:
        """Refuse to contact a host the domain policy refuses (before anything is sent)."""
        if self._host_policy is None:
            return
        host = host_of(url_or_host) if "://" in url_or_host else url_or_host.lower()
        refusal = await self._host_policy(host)
        if refusal is not None:
            raise FetchError(f"not fetching from {host}: {refusal}")

    # -- keys -------------------------------------------------------------------------------
    async def key(self, key_id: str) -> KeyInfo:
        """The key with this id, from memory, the database, or its origin."""
        cached = self._keys.get(key_id)
        if cached is not None:
            self._keys.move_to_end(key_id)
            return cached
        async with self._sessionmaker() as session:
            # The actor whose publicKey this is, or the one whose document the key id is in
            # (a Multikey `actor#frag`); both indexed.
            candidates = (
                await session.execute(
                    select(Actor).where(
                        or_(Actor.key_id == key_id, Actor.uri == urldefrag(key_id).url)
                    )
                )
            ).scalars().all()
        for actor in candidates:
            if actor.key_id == key_id and actor.public_key_pem:
                return self._remember(KeyInfo(key_id, actor.uri, actor.public_key_pem))
        for actor in candidates:
            if actor.assertion_key_id == key_id and actor.assertion_public_key:
                return self._remember(_multikey_info(key_id, actor.uri, actor.assertion_public_key))
        if self._urls.is_local(key_id):
            raise FetchError(f"no local actor has the key {key_id}")
        return await self._fetch_key(key_id)

    async def refresh_key(self, key_id: str) -> KeyInfo | None:
        """Refetch a key that failed to verify, unless it was refetched recently."""
        if self._urls.is_local(key_id):
            return None
        owner = self._keys.get(key_id)
        throttle_key = owner.owner if owner else key_id
        moment = self._clock()
        if moment - self._last_refresh.get(throttle_key, 0.0) < REFRESH_INTERVAL:
            return None
        self._last_refresh[throttle_key] = moment
        if len(self._last_refresh) > KEY_CACHE_SIZE:
            self._last_refresh.clear()
        self._keys.pop(key_id, None)
        return await self._fetch_key(key_id)

    async def _fetch_key(self, key_id: str) -> KeyInfo:
        """One fetch per key at a time: a burst of first requests from an unknown actor
        waits for the same fetch instead of fetching (and inserting) once each."""
        running = self._fetching.get(key_id)
        if running is None:
            running = asyncio.ensure_future(self._fetch_key_once(key_id))
            self._fetching[key_id] = running
            running.add_done_callback(lambda _: self._fetching.pop(key_id, None))
        return await asyncio.shield(running)

    async def _fetch_key_once(self, key_id: str) -> KeyInfo:
        document_url = urldefrag(key_id).url
        await self._check_host(document_url)
        doc = await self._client.fetch_object(document_url, sign_as=self._instance_key())
        key_pem: str | None = None  # a standalone key document's own key
        owner: str | None = None
        if first_type(doc) not in ACTOR_TYPES:
            # A standalone key document names its owner; the owner must list the key.
            owner = id_of(doc.get("owner"))
            if owner is None or doc.get("id") != key_id:
                raise FetchError(f"{key_id} is neither an actor nor a key with an owner")
            if isinstance(doc.get("publicKeyPem"), str):
                key_pem = doc["publicKeyPem"]
            await self._check_host(owner)
            doc = await self._client.fetch_object(owner, sign_as=self._instance_key())
        try:
            remote = parse_actor(doc)
            if remote.assertion_key_id == key_id and remote.assertion_public_key:
                info = _multikey_info(key_id, remote.id, remote.assertion_public_key)
            elif key_pem is not None and remote.id == owner and _is_assertion_key(key_pem, remote):
                info = KeyInfo(key_id, remote.id, key_pem)
            else:
                remote = parse_actor(doc, key_id=key_id)
                info = KeyInfo(key_id, remote.id, remote.public_key_pem)
        except (ValidationError, SignatureError) as exc:
            raise FetchError(exc.reason) from None
        if host_of(key_id) != remote.domain:
            raise FetchError(f"key {key_id} is not on the host of its owner {remote.id}")
        await self.store(remote)
        return self._remember(info)

    def _remember(self, info: KeyInfo) -> KeyInfo:
        self._keys[info.key_id] = info
        self._keys.move_to_end(info.key_id)
        while len(self._keys) > KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        return info

    # -- actors -----------------------------------------------------------------------------
    async def actor(self, session: AsyncSession, uri: str, *, refresh: bool = False) -> Actor:
        """The actor with this id, fetched from its origin if we do not know it yet."""
        memo = memo_of(session)
        kept = memo.get(("actor", uri)) if memo is not None else None
        found = kept[0] if kept is not None else (
            await session.execute(select(Actor).where(Actor.uri == uri))
        ).scalar_one_or_none()
        if found is not None and (found.local or not refresh):
            return found
        if self._urls.is_local(uri):
            raise FetchError(f"there is no local actor {uri}")
        remote: RemoteActor = await network(("actor", uri), lambda: self._fetch_actor(uri))
        return await upsert_actor(session, remote)

    async def _fetch_actor(self, uri: str) -> RemoteActor:
        await self._check_host(uri)
        doc = await self._client.fetch_object(uri, sign_as=self._instance_key())
        try:
            return parse_actor(doc)
        except ValidationError as exc:
            raise FetchError(exc.reason) from None

    async def preload(self, session: AsyncSession, uris: set[str]) -> None:
        """The known actors among `uris`, read in one query and kept in the session's batch
        memo (fedi.store.memo) for `actor`: the inbox processor's batch, whose items'
        actors are known before it runs them. A write to actors drops them."""
        memo = memo_of(session)
        if memo is None or not uris:
            return
        for found in (await session.execute(select(Actor).where(Actor.uri.in_(uris)))).scalars():
            memo.put(("actor", found.uri), found, _ACTORS)

    async def store(self, remote: RemoteActor) -> None:
        try:
            async with self._sessionmaker() as session, session.begin():
                await upsert_actor(session, remote)
        except IntegrityError:
            # Another process stored the same actor first; theirs is as good as ours.
            async with self._sessionmaker() as session, session.begin():
                await upsert_actor(session, remote)

    async def fetch(self, url: str) -> dict[str, Any]:
        async def fetch() -> dict[str, Any]:
            await self._check_host(url)
            return await self._client.fetch_object(url, sign_as=self._instance_key())

        found: dict[str, Any] = await network(("object", url), fetch)
        return found

    async def software(self, session: AsyncSession, host: str) -> str | None:
        """The NodeInfo software name of a host, looked up at most once a day."""
        record = await session.get(Host, host)
        moment = self._clock()
        if record is not None and moment - record.software_checked_at < SOFTWARE_TTL:
            return record.software or None
        software: str | None = await network(("software", host),
                                             lambda: self._nodeinfo_software(host))
        if record is None:
            record = Host(host=host, failures=0, down_until=0.0, gone=False)
            session.add(record)
        record.software_checked_at = moment
        record.software = software or ""
        return record.software or None

    async def _nodeinfo_software(self, host: str) -> str | None:
        if self._urls.is_local(f"{self._urls.base.split('://')[0]}://{host}"):
            return "fedi"
        try:
            await self._check_host(host)
        except FetchError:
            return None
        for scheme in ("https", "http") if self._allow_http else ("https",):
            try:
                _, links = await self._client.fetch_json(
                    f"{scheme}://{host}/.well-known/nodeinfo", accept="application/json"
                )
                hrefs = [
                    link.get("href") for link in links.get("links", [])
                    if isinstance(link, dict)
                    and str(link.get("rel", "")).startswith(NODEINFO_REL)
                ]
                href = next((h for h in reversed(hrefs) if isinstance(h, str)
                             and host_of(h) == host), None)
                if href is None:
                    return None
                _, info = await self._client.fetch_json(href, accept="application/json")
                name = info.get("software", {}).get("name")
                return name.lower()[:64] if isinstance(name, str) else None
            except (FetchError, AttributeError):
                continue
        return None

    async def resolve_handle(self, session: AsyncSession, handle: str) -> Actor:
        """@name@host → the actor, checked both ways: the actor must call itself `name`,
        so a WebFinger answer cannot hand us someone else's account."""
        name, host = parse_handle(handle)
        await self._check_host(host)
        uri = await self._client.webfinger(handle)
        actor = await self.actor(session, uri, refresh=True)
        if actor.username.lower() != name.lower():
            raise FetchError(
                f"{handle} points to {uri}, whose preferredUsername is {actor.username!r}"
            )
        if actor.domain != host.lower():
            # Split domains: the actor's own host must agree that this handle is theirs.
            back = await self._client.webfinger(f"{actor.username}@{host}")
            if back != actor.uri:
                raise FetchError(f"{handle} and {uri} do not resolve to each other")
        return actor


    async def resolve_invite(self, session: AsyncSession, handle: str, link: str) -> Actor:
        """The group an invite link names: its actor URI is the link without `/invite/TOKEN`.

        A hidden group answers WebFinger to its members only, so a newcomer's server finds it
        through the link it was given; the actor must still be `name` on `host` of the
        handle, so a link cannot swap in another group."""
        name, host = parse_handle(handle)
        uri, sep, token = link.strip().partition("/invite/")
        if not sep or not token or not is_http_url(uri):
            raise FetchError(f"{link[:200]!r} is not an invite link (…/groups/NAME/invite/…)")
        if host_of(uri) != (normalise_or_none(host) or host.lower()):
            raise FetchError(f"the invite link is for {host_of(uri)}, not for {host}")
        actor = await self.actor(session, uri, refresh=True)
        if actor.username.lower() != name.lower():
            raise FetchError(f"the invite link is for {actor.username}, not for {name}")
        return actor


async def upsert_actor(session: AsyncSession, remote: RemoteActor) -> Actor:
    actor = (
        await session.execute(select(Actor).where(Actor.uri == remote.id))
    ).scalar_one_or_none()
    if actor is None:
        actor = Actor(uri=remote.id, local=False)
        session.add(actor)
    elif actor.local:
        raise FetchError(f"{remote.id} is a local actor")
    actor.type = remote.type
    actor.username = remote.username
    actor.domain = remote.domain
    actor.name = remote.name
    actor.summary = remote.summary
    actor.inbox = remote.inbox
    actor.shared_inbox = remote.shared_inbox
    actor.outbox = remote.outbox
    actor.followers_url = remote.followers
    actor.url = remote.url
    if actor.key_id != remote.key_id or actor.public_key_pem != remote.public_key_pem:
        actor.key_refreshed_at = now()
    actor.key_id = remote.key_id
    actor.public_key_pem = remote.public_key_pem
    actor.assertion_key_id = remote.assertion_key_id
    actor.assertion_public_key = remote.assertion_public_key
    actor.manually_approves_followers = remote.manually_approves_followers
    actor.fetched_at = now()
    await session.flush()
    return actor


def _multikey_info(key_id: str, owner: str, multibase: str) -> KeyInfo:
    try:
        return KeyInfo(key_id, owner, multikey_public_pem(multibase))
    except SignatureError as exc:
        raise FetchError(f"the key {key_id} of {owner}: {exc.reason}") from None


def _is_assertion_key(pem: str, actor: RemoteActor) -> bool:
    """Whether a key document's PEM is the actor's own published Ed25519 Multikey."""
    return actor.assertion_public_key is not None and is_multikey(pem, actor.assertion_public_key)
