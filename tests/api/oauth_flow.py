"""The OAuth dance as a Mastodon app and a browser do it, over HTTP against the in-process
app: register, sign in, consent, take the code to the token endpoint."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.accounts.support import PASSWORD, browser, log_in, sign_up, token_in
from tests.support.app import InProcess

CALLBACK = "https://app.example/callback"
HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


async def register(http: httpx.AsyncClient, *, scopes: str = "read write follow push",
                   redirect_uris: str | list[str] = CALLBACK, as_json: bool = False,
                   **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"client_name": "Test App", "redirect_uris": redirect_uris,
                              "scopes": scopes, **extra}
    answer = (await http.post("/api/v1/apps", json=fields) if as_json
              else await http.post("/api/v1/apps", data=fields))
    assert answer.status_code == 200, answer.text
    app: dict[str, Any] = answer.json()
    return app


@asynccontextmanager
async def person(fedi: InProcess, name: str, password: str = PASSWORD
                 ) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in as a newly signed-up person."""
    async with browser(fedi) as http:
        await sign_up(http, name, password)
        answer = await log_in(http, name, password)
        assert answer.status_code == 303, answer.text
        yield http


def authorize_url(app: dict[str, Any], **params: str) -> str:
    query = {"response_type": "code", "client_id": app["client_id"],
             "redirect_uri": app["redirect_uris"][0], "scope": "read write", **params}
    return "/oauth/authorize?" + httpx.QueryParams(query).__str__()


async def consent(http: httpx.AsyncClient, app: dict[str, Any], decision: str = "allow",
                  **params: str) -> httpx.Response:
    """Open the consent page and press a button; the answer to the POST (not followed)."""
    page = await http.get(authorize_url(app, **params))
    assert page.status_code == 200, page.text
    fields = {name: value for name, value in HIDDEN.findall(page.text)}
    fields["csrf"] = token_in(page)
    return await http.post("/oauth/authorize", data={**fields, "decision": decision})


def answer_of(response: httpx.Response) -> dict[str, str]:
    """The query the consent sent the browser back to the app with."""
    assert response.status_code == 303, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def code_for(http: httpx.AsyncClient, app: dict[str, Any], **params: str) -> str:
    return answer_of(await consent(http, app, **params))["code"]


async def exchange(http: httpx.AsyncClient, app: dict[str, Any], code: str,
                   **extra: str) -> httpx.Response:
    return await http.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": app["client_id"],
        "client_secret": app["client_secret"], "redirect_uri": app["redirect_uris"][0],
        **extra})
