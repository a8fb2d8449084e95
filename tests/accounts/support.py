"""Helpers for account tests: a browser-like client that reads CSRF tokens from forms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from fedi.accounts import registration
from tests.support.app import BASE_URL, InProcess, running_app

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# Cheap hashing for tests that do not test hashing (argon2's floor is 8 KiB per lane).
FAST = {"password_time_cost": 1, "password_memory_kib": 1024}
PASSWORD = "correct horse battery"


@asynccontextmanager
async def app(database_url: str, mode: str = "open", **overrides: Any
              ) -> AsyncIterator[InProcess]:
    async with running_app(database_url, **{**FAST, **overrides}) as fedi:
        async with fedi.services.sessionmaker() as session, session.begin():
            await registration.set_mode(session, mode)
        yield fedi


@asynccontextmanager
async def browser(fedi: InProcess) -> AsyncIterator[httpx.AsyncClient]:
    """Another browser (its own cookie jar) on the same app."""
    transport = fedi.http._transport
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def token_in(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, f"no CSRF token on {page.url}: {page.text[:500]}"
    return found.group(1)


async def post_form(http: httpx.AsyncClient, page: str, action: str | None = None,
                    **fields: str) -> httpx.Response:
    """GET the page, then POST its form with the page's CSRF token (as a browser does)."""
    shown = await http.get(page)
    return await http.post(action or page, data={"csrf": token_in(shown), **fields})


async def sign_up(http: httpx.AsyncClient, name: str, password: str = PASSWORD,
                  **extra: str) -> httpx.Response:
    return await post_form(http, "/signup", username=name, password=password, **extra)


async def log_in(http: httpx.AsyncClient, name: str, password: str = PASSWORD,
                 **extra: str) -> httpx.Response:
    return await post_form(http, "/login", username=name, password=password, **extra)


def session_cookie(http: httpx.AsyncClient) -> str | None:
    return http.cookies.get("fedi_session")
