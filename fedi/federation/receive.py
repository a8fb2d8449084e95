"""Inbox ingress: verify, store durably, answer. Processing happens later in the worker.

Order matters: cheap checks (size, JSON shape, host policy) before any key fetch, so junk and
blocked hosts cost us nothing remote (SECURITY 4–9, 13, 14).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fedi import metrics
from fedi.activitypub.httpsig import SignatureParams, parse_signature, verify_request
from fedi.activitypub.parse import IncomingActivity, host_of, parse_activity_body
from fedi.errors import FetchError, SignatureError, ValidationError
from fedi.federation.admission import HostBuckets, Refusal
from fedi.federation.backlog import InboxBacklog
from fedi.federation.inbox_store import GroupCommit, StoreBusy
from fedi.federation.resolve import ActorResolver, KeyInfo
from fedi.store.models import InboxItem, now

log = logging.getLogger(__name__)

# Retry-After when a row could not be stored: the database was briefly unable, or behind.
STORE_RETRY_AFTER = 10

# Decides whether a host may talk to us at all (domain blocks, allowlist mode). It runs before
# any key is fetched. None means allowed; a string is the reason for refusing.
HostPolicy = Callable[[str], Awaitable[str | None]]


async def allow_all(_host: str) -> str | None:
    return None


@dataclass(frozen=True)
class InboxRequest:
    method: str
    url: str  # absolute, as our base URL names it
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    recipient: str | None  # the actor whose inbox was posted to; None for the shared inbox


@dataclass(frozen=True)
class InboxResult:
    status: int
    reason: str
    retry_after: int | None = None  # seconds, sent as Retry-After with 429 and 503

    @staticmethod
    def refused(refusal: Refusal) -> InboxResult:
        return InboxResult(refusal.status, refusal.reason, refusal.retry_after)


@dataclass(frozen=True)
class Admitted:
    """Admission passed. The signature as parsed for it (or why it could not be), handed to
    receive() so that a request's signature header is parsed once."""

    signature: SignatureParams | SignatureError


class Receiver:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        resolver: ActorResolver,
        domain: str,
        host_policy: HostPolicy = allow_all,
        on_stored: Callable[[], None] | None = None,
        backlog: InboxBacklog | None = None,
        buckets: HostBuckets | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._resolver = resolver
        self._domain = domain
        self._host_policy = host_policy
        self.host_policy = host_policy
        self._on_stored = on_stored
        # Admission control (None: unbounded, as in unit tests of the pipeline).
        self._backlog = backlog
        self._buckets = buckets
        engine = sessionmaker.kw["bind"]
        insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        # A duplicate id is the same activity sent twice: stored once, processed once.
        self._writer = GroupCommit(
            engine, insert(InboxItem).on_conflict_do_nothing(index_elements=["activity_uri"])
        )

    async def admit(self, headers: Mapping[str, str]) -> InboxResult | Admitted:
        """Admission control from the headers alone (the route asks before reading the
        body): 503 (the queue is full or behind), 429 (this host is over its share), or
        Admitted, to be handed to receive()."""
        admission = await self._admit(headers)
        if isinstance(admission, InboxResult):
            metrics.inbox_result(admission.status)
        return admission

    async def _admit(self, headers: Mapping[str, str]) -> InboxResult | Admitted:
        if self._backlog is not None and (full := await self._backlog.refusal()) is not None:
            return InboxResult.refused(full)
        try:
            signature = parse_signature(headers)
        except SignatureError as exc:
            return Admitted(exc)  # receive() answers 401 with the reason
        if self._buckets is not None and (
            too_fast := self._buckets.refusal(host_of(signature.key_id))
        ) is not None:
            return InboxResult.refused(too_fast)
        return Admitted(signature)

    async def receive(
        self, request: InboxRequest, admitted: Admitted | None = None
    ) -> InboxResult:
        """`admitted`: what admit() answered for these headers; without it, admission is
        decided here (nothing refused is stored either way)."""
        result = await self._receive(request, admitted)
        metrics.inbox_result(result.status)
        return result

    async def _receive(self, request: InboxRequest, admitted: Admitted | None) -> InboxResult:
        if admitted is None:
            admission = await self._admit(request.headers)
            if isinstance(admission, InboxResult):
                return admission
            admitted = admission
        signature = admitted.signature
        if isinstance(signature, SignatureError):
            signed = "signature" in request.headers or "signature-input" in request.headers
            return _unverified("malformed" if signed else "unsigned", signature.reason)
        # A host's share is charged only once its signature verified (below), so forged key
        # ids cannot spend another host's share.
        signer_host = host_of(signature.key_id)
        host_header = request.headers.get("host", "").lower()
        if host_header and host_header != self._domain:
            return _unverified(
                "wrong_host", f"request was addressed to {host_header}, not {self._domain}"
            )
        try:
            activity = parse_activity_body(request.body)
        except ValidationError as exc:
            return InboxResult(400, exc.reason)
        actor_host = host_of(activity.actor)
        for host in {actor_host, signer_host}:
            refusal = await self._host_policy(host)
            if refusal is not None:
                return InboxResult(403, refusal)
        if signer_host != actor_host:
            return _unverified("key_host", "the signing key is not on the actor's host")

        try:
            key = await self._resolver.key(signature.key_id)
        except FetchError as exc:
            if activity.type == "Delete" and activity.object_id == activity.actor:
                # A deleted account's key is gone with it; nothing of ours depends on it.
                return InboxResult(202, "accepted: delete of an actor we cannot verify")
            return _unverified("key_unavailable", f"could not get the signing key: {exc.reason}")
        if key.owner != activity.actor:
            return _unverified(
                "key_owner", f"signed by {key.owner}, but the actor is {activity.actor}"
            )

        failure = self._verify(signature, request, key)
        if failure is not None:
            try:
                refreshed = await self._resolver.refresh_key(signature.key_id)
            except FetchError:
                refreshed = None
            if refreshed is None or refreshed.owner != activity.actor:
                return _unverified("invalid", failure)
            failure = self._verify(signature, request, refreshed)
            if failure is not None:
                return _unverified("invalid", failure)

        if self._buckets is not None:
            self._buckets.take(signer_host)
        # Checked again with the rows being stored now: a flood's requests, admitted together
        # before any of them was stored, must not all go past the queue's limit.
        if self._backlog is not None and (full := self._backlog.reserve()) is not None:
            return InboxResult.refused(full)
        stored = False
        try:
            await self._store(activity, request)
            stored = True
        except StoreBusy as exc:  # nothing of it was stored: the sender must send it again
            return InboxResult(503, exc.reason, STORE_RETRY_AFTER)
        finally:
            if self._backlog is not None:
                self._backlog.release(stored=stored)
        return InboxResult(202, "accepted")

    @staticmethod
    def _verify(signature: SignatureParams, request: InboxRequest, key: KeyInfo) -> str | None:
        try:
            verify_request(
                signature,
                request.method,
                request.url,
                request.headers,
                request.body,
                key.public_key_pem,
            )
        except SignatureError as exc:
            return exc.reason
        return None

    async def _store(self, activity: IncomingActivity, request: InboxRequest) -> None:
        # The raw body is stored as received (already parsed once; no need to re-encode).
        await self._writer.insert({
            "activity_uri": activity.id,
            "actor_uri": activity.actor,
            "recipient": request.recipient,
            "body": request.body.decode("utf-8", errors="replace"),
            "state": "new",
            "attempts": 0,
            "claimed_until": 0.0,
            "received_at": now(),
        })
        if self._on_stored is not None:
            self._on_stored()

    async def close(self) -> None:
        await self._writer.close()


def _unverified(kind: str, reason: str) -> InboxResult:
    """401, counted by `kind` (one of metrics.SIGNATURE_REASONS; the reason is free text)."""
    metrics.signature_failure(kind)
    return InboxResult(401, reason)
