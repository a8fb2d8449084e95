"""What the instance says about itself to Mastodon clients: `/api/v1/instance` and
`/api/v2/instance`, its peers, rules, extended description, activity and public domain
blocks.

Strict clients fail the whole decode on a missing field (CLIENT-API.md lists them), so every
field Mastodon documents is present. `version` leads with a Mastodon version (Mastodon.py
parses the leading N.N.N); fedi's own version follows in parentheses. The figures are the
ones /about and NodeInfo publish, read from the same sources (fedi.web.about.figures).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.accounts import instance as about_settings
from fedi.accounts import registration
from fedi.accounts.registration import EMAIL_RE
from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.entities import DEFAULT_HEADER, iso
from fedi.content import text_to_html
from fedi.groups.posting import MAX_TEXT
from fedi.store.backup import fedi_version
from fedi.store.models import Actor, DomainBlock, User
from fedi.web.about import figures

MASTODON_API = "4.2.0"
POLL_LIMITS = {"max_options": 0, "max_characters_per_option": 0,
               "min_expiration": 300, "max_expiration": 2_629_746}


def version() -> str:
    return f"{MASTODON_API} (compatible; fedi {fedi_version()})"


def streaming_url(base_url: str) -> str:
    """Where the WebSocket lives: the server's own origin as ws(s)://, as Mastodon gives it
    (clients add /api/v1/streaming themselves)."""
    if base_url.startswith("https://"):
        return "wss://" + base_url.removeprefix("https://")
    return "ws://" + base_url.removeprefix("http://")


def _email(contact: str) -> str:
    return contact if EMAIL_RE.fullmatch(contact) else ""


def _rules(rules: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"id": str(i), "text": text, "hint": ""} for i, text in enumerate(rules, 1)]


async def _domains(session: AsyncSession) -> list[str]:
    """Servers known here (their actors are stored), without the ones suspended."""
    suspended = select(DomainBlock.domain).where(DomainBlock.severity == "suspend")
    rows = await session.execute(
        select(Actor.domain).distinct()
        .where(Actor.local.is_(False), Actor.domain.not_in(suspended))
        .order_by(Actor.domain))
    return [d for d in rows.scalars() if d]


async def _contact_account(session: AsyncSession) -> Actor | None:
    """The first admin, whom Mastodon names as the contact account."""
    return (await session.execute(
        select(Actor).join(User, User.actor_id == Actor.id)
        .where(User.is_admin.is_(True)).order_by(User.created_at, Actor.id).limit(1)
    )).scalar_one_or_none()


class _Facts:
    """What both instance versions say, read once."""

    def __init__(self, info: about_settings.InstanceInfo, mode: str, users: int, posts: int,
                 domains: int, contact: dict[str, Any] | None) -> None:
        self.info, self.mode, self.users, self.posts = info, mode, users, posts
        self.domains, self.contact = domains, contact

    @property
    def open(self) -> bool:
        return self.mode in ("open", "approval")

    @property
    def short(self) -> str:
        first = self.info.description.strip().split("\n\n", 1)[0]
        return first[:500]


async def _facts(request: Request, caller: Caller) -> _Facts:
    async with services_of(request).sessionmaker() as session:
        info = await about_settings.load(session)
        mode = await registration.get_mode(session)
        counted = await figures(session)
        domains = len(await _domains(session))
        admin = await _contact_account(session)
        contact = None
        if admin is not None:
            contact = await (await presenter(session, request, caller)).account(admin)
    return _Facts(info, mode, counted.users, counted.posts, domains, contact)


def _configuration(base_url: str) -> dict[str, Any]:
    return {
        "urls": {"streaming": streaming_url(base_url), "status": None},
        "vapid": {"public_key": ""},
        "accounts": {"max_featured_tags": 0, "max_pinned_statuses": 0},
        "statuses": {"max_characters": MAX_TEXT, "max_media_attachments": 0,
                     "characters_reserved_per_url": 23},
        "media_attachments": {
            "supported_mime_types": [], "description_limit": 0, "image_size_limit": 0,
            "image_matrix_limit": 0, "video_size_limit": 0, "video_frame_rate_limit": 0,
            "video_matrix_limit": 0,
        },
        "polls": dict(POLL_LIMITS),
        "translation": {"enabled": False},
    }


@endpoint(None, public=True)
async def instance_v2(request: Request, caller: Caller) -> Response:
    settings = services_of(request).settings
    facts = await _facts(request, caller)
    return JSONResponse({
        "domain": settings.domain,
        "title": settings.instance_name,
        "version": version(),
        "source_url": settings.source_url or f"{settings.base_url}/source.tar.gz",
        "description": facts.short,
        "usage": {"users": {"active_month": facts.users}},
        "thumbnail": {"url": f"{settings.base_url}{DEFAULT_HEADER}", "blurhash": None,
                      "versions": {}},
        "icon": [],
        "languages": ["en"],
        "configuration": _configuration(settings.base_url),
        "registrations": {
            "enabled": facts.open, "approval_required": facts.mode == "approval",
            "message": None if facts.open else "Sign-up is closed or needs an invite.",
            "url": None,
        },
        "api_versions": {"mastodon": 1},
        "contact": {"email": _email(facts.info.contact), "account": facts.contact},
        "rules": _rules(facts.info.rules),
    })


@endpoint(None, public=True)
async def instance_v1(request: Request, caller: Caller) -> Response:
    settings = services_of(request).settings
    facts = await _facts(request, caller)
    configuration = _configuration(settings.base_url)
    del configuration["urls"], configuration["vapid"], configuration["translation"]
    return JSONResponse({
        "uri": settings.domain,
        "title": settings.instance_name,
        "short_description": facts.short,
        "description": text_to_html(facts.info.description) if facts.info.description else "",
        "email": _email(facts.info.contact),
        "version": version(),
        "urls": {"streaming_api": streaming_url(settings.base_url)},
        "stats": {"user_count": facts.users, "status_count": facts.posts,
                  "domain_count": facts.domains},
        "thumbnail": f"{settings.base_url}{DEFAULT_HEADER}",
        "languages": ["en"],
        "registrations": facts.open,
        "approval_required": facts.mode == "approval",
        "invites_enabled": facts.mode == "invite",
        "configuration": configuration,
        "contact_account": facts.contact,
        "rules": _rules(facts.info.rules),
    })


@endpoint(None, public=True)
async def peers(request: Request, caller: Caller) -> Response:
    async with services_of(request).sessionmaker() as session:
        return JSONResponse(await _domains(session))


@endpoint(None, public=True)
async def rules(request: Request, caller: Caller) -> Response:
    async with services_of(request).sessionmaker() as session:
        info = await about_settings.load(session)
    return JSONResponse(_rules(info.rules))


@endpoint(None, public=True)
async def extended_description(request: Request, caller: Caller) -> Response:
    async with services_of(request).sessionmaker() as session:
        info = await about_settings.load(session)
    # The settings keep no date of change; now is as true as any.
    return JSONResponse({
        "updated_at": iso(time.time()),
        "content": text_to_html(info.description) if info.description else "",
    })


@endpoint(None, public=True)
async def nothing_listed(request: Request, caller: Caller) -> Response:
    """Weekly activity and public domain blocks: fedi publishes neither (an empty list is
    Mastodon's answer when a server keeps them to itself)."""
    return JSONResponse([])


routes: list[BaseRoute] = [
    Route("/api/v1/instance", instance_v1),
    Route("/api/v2/instance", instance_v2),
    Route("/api/v1/instance/peers", peers),
    Route("/api/v1/instance/rules", rules),
    Route("/api/v1/instance/extended_description", extended_description),
    Route("/api/v1/instance/activity", nothing_listed),
    Route("/api/v1/instance/domain_blocks", nothing_listed),
]
