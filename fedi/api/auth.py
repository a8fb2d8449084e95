"""Who calls the API, and whether they may: a Bearer token (header, or `access_token` in
the query as streaming clients send it), the scope each endpoint names, and the rate limits.

`endpoint(scope)` wraps a handler `(request, caller) -> Response`:
- no token where one is needed, or a revoked / expired / unknown one → 401;
- a token without the scope → 403; an app-only token where a person is needed → 422;
- ApiError and FediError become Mastodon's error JSON; nothing else leaks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from fedi.accounts import oauth
from fedi.api import ratelimit
from fedi.api.entities import Presenter
from fedi.api.errors import ApiError, forbidden_scope, unauthorized, unprocessable
from fedi.errors import FediError, ValidationError
from fedi.groups.viewers import viewer_for
from fedi.services import Services
from fedi.store.models import Actor
from fedi.web.auth import client_address

Handler = Callable[[Request, "Caller"], Awaitable[Response]]


@dataclass(frozen=True)
class Caller:
    grant: oauth.Grant | None  # None: no token (public endpoints)
    person: Actor | None  # the signed-in local person the token acts for

    def need_person(self) -> Actor:
        if self.person is None:
            raise unprocessable("This method requires an authenticated user")
        return self.person


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    token = request.query_params.get("access_token")
    return token or None


def _limiters(request: Request) -> tuple[ratelimit.Limiter, ratelimit.Limiter]:
    state = request.app.state
    if not hasattr(state, "api_limiters"):
        state.api_limiters = (ratelimit.Limiter(ratelimit.PER_TOKEN),
                              ratelimit.Limiter(ratelimit.PER_ADDRESS))
    found: tuple[ratelimit.Limiter, ratelimit.Limiter] = state.api_limiters
    return found


async def caller_of(request: Request) -> Caller:
    """The caller of a request; raises 401 for a token that is present but not valid."""
    raw = bearer(request)
    if raw is None:
        return Caller(None, None)
    services = services_of(request)
    async with services.sessionmaker() as session:
        grant = await oauth.find_token(session, raw)
        if grant is None:
            raise unauthorized()
        person = await session.get(Actor, grant.actor_id) if grant.actor_id else None
    if grant.actor_id is not None and person is None:
        raise unauthorized()
    return Caller(grant, person)


def _limit(request: Request, caller: Caller) -> dict[str, str]:
    """Count the request against its address and its token; the headers tell the token's
    budget (or the address's, without a token)."""
    by_token, by_address = _limiters(request)
    address = client_address(request, services_of(request).settings.trusted_proxies)
    verdict = by_address.hit(address)
    limit = by_address.limit
    if caller.grant is not None:
        token_verdict = by_token.hit(f"t{caller.grant.token_id}")
        allowed = verdict[0] and token_verdict[0]
        verdict, limit = (allowed, *token_verdict[1:]), by_token.limit
    allowed, remaining, reset = verdict
    found = ratelimit.headers(limit, remaining, reset)
    if not allowed:
        raise ApiError(429, "Too many requests", headers=found)
    return found


def endpoint(scope: str | None, *, person: bool = True, public: bool = False
             ) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """scope: what the token needs (None: any token). person: the token must act for a
    person. public: callable without a token (a token, if sent, must still be valid)."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @wraps(handler)
        async def run(request: Request) -> Response:
            limits: dict[str, str] = {}
            try:
                caller = await caller_of(request)
                limits = _limit(request, caller)
                if caller.grant is None:
                    if not public:
                        raise unauthorized()
                else:
                    if scope is not None and not caller.grant.allows(scope):
                        raise forbidden_scope(scope)
                    if person and not public and caller.person is None:
                        raise unprocessable("This method requires an authenticated user")
                response = await handler(request, caller)
            except ApiError as exc:
                response = exc.response()
            except ValidationError as exc:
                response = unprocessable(exc.reason).response()
            except FediError as exc:
                response = ApiError(422, exc.reason).response()
            for name, value in limits.items():
                response.headers.setdefault(name, value)
            return response

        return run

    return wrap


async def presenter(session: AsyncSession, request: Request, caller: Caller) -> Presenter:
    """The entity builder for this caller: the privacy gate sees the token's person (or an
    anonymous reader for a public call)."""
    viewer = await viewer_for(session, caller.person.uri if caller.person else None)
    return Presenter(session, services_of(request).settings.base_url, viewer, caller.person)
