"""Who is asking: verify the HTTP signature of an ActivityPub GET.

A signed fetch identifies the asking actor, so non-public objects can be served to the
people in their audience. An unsigned fetch is anonymous; a bad signature is refused, and so
is a signed fetch from a server the domain policy refuses (README: suspended domains get
nothing, not even public documents, when they identify themselves).
"""

from __future__ import annotations

from collections.abc import Mapping

from fedi.activitypub.httpsig import parse_signature, verify_request
from fedi.activitypub.parse import host_of
from fedi.errors import FetchError, SignatureError
from fedi.federation.receive import HostPolicy, allow_all
from fedi.federation.resolve import ActorResolver


class RefusedHost(SignatureError):
    """The signer's server is refused by domain policy (suspended, or not on the allowlist):
    answered 403, as the inbox does, and nothing is served to it."""


class FetchVerifier:
    def __init__(
        self, resolver: ActorResolver, domain: str, host_policy: HostPolicy = allow_all
    ) -> None:
        self._resolver = resolver
        self._domain = domain
        self.host_policy = host_policy

    async def refusal(self, headers: Mapping[str, str]) -> str | None:
        """Why a signed request's server is refused by domain policy, else None; decided
        from the keyId alone, without fetching any key. For public documents (actors): a
        key fetch there would sign its own fetch back to us, and the peer's to us, forever."""
        if "signature" not in headers and "signature-input" not in headers:
            return None
        try:
            params = parse_signature(headers)
        except SignatureError:
            return None  # unreadable: anonymous, as far as public documents go
        return await self.host_policy(host_of(params.key_id))

    async def signer(self, method: str, url: str, headers: Mapping[str, str]) -> str | None:
        """The actor who signed this request, None if unsigned; SignatureError if invalid."""
        if "signature" not in headers and "signature-input" not in headers:
            return None
        params = parse_signature(headers)
        host_header = headers.get("host", "").lower()
        if host_header and host_header != self._domain:
            raise SignatureError(f"request was addressed to {host_header}, not {self._domain}")
        refusal = await self.host_policy(host_of(params.key_id))
        if refusal is not None:
            raise RefusedHost(refusal)
        try:
            key = await self._resolver.key(params.key_id)
        except FetchError as exc:
            raise SignatureError(f"could not get the signing key: {exc.reason}") from None
        try:
            verify_request(params, method, url, headers, None, key.public_key_pem)
        except SignatureError:
            refreshed = await self._resolver.refresh_key(params.key_id)
            if refreshed is None:
                raise
            verify_request(params, method, url, headers, None, refreshed.public_key_pem)
            return refreshed.owner
        return key.owner
