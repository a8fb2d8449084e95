"""Error pages: the site's layout for a browser, JSON for ActivityPub clients, and a 500 that
shows a request id but never the exception."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.app import create_app
from fedi.config import Settings
from tests.support.app import BASE_URL, migrated

AP = {"Accept": "application/activity+json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
SECRET = "postgresql://fedi:hunter2-secret@db/fedi"


async def _boom(_request: Request) -> Response:
    raise RuntimeError(f"could not connect to {SECRET}")


async def _forbidden(_request: Request) -> Response:
    raise HTTPException(403, "Only the group's moderators may pin a thread.")


async def _too_large(_request: Request) -> Response:
    raise HTTPException(413)


@asynccontextmanager
async def fedi_with_test_routes(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The real app plus three routes that fail on purpose; exceptions reach the handlers
    and are not re-raised into the test (as uvicorn would only log them)."""
    settings = Settings(base_url=BASE_URL, database_url=database_url,
                        instance_name="Test Commons")
    await migrated(settings)
    app = create_app(settings, run_worker=False)
    app.router.routes += [Route("/test/boom", _boom), Route("/test/forbidden", _forbidden),
                          Route("/test/large", _too_large, methods=["POST"])]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield http


def _in_layout(page: httpx.Response, heading: str) -> None:
    assert page.headers["content-type"].startswith("text/html")
    assert "<main" in page.text and "Test Commons" in page.text
    assert f"<h1>{heading}</h1>" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_a_browser_gets_the_404_page_and_a_peer_gets_json(database_url: str) -> None:
    async with fedi_with_test_routes(database_url) as http:
        for path in ("/no/such/page", "/groups/nobody", "/users/nobody", "/posts/12345"):
            page = await http.get(path, headers=BROWSER)
            assert page.status_code == 404, path
            _in_layout(page, "Page not found")
            assert "not yours to see" in page.text
            peer = await http.get(path, headers=AP)
            assert peer.status_code == 404, path
            assert peer.headers["content-type"].startswith("application/json")
            assert "error" in peer.json() and "<html" not in peer.text
            assert "Accept" in peer.headers["vary"]


async def test_inbox_and_machine_paths_answer_json_whatever_is_accepted(
    database_url: str,
) -> None:
    async with fedi_with_test_routes(database_url) as http:
        wrong_method = await http.get("/inbox", headers=BROWSER)
        assert wrong_method.status_code == 405
        assert wrong_method.json() == {"error": TEXT_405}
        missing = await http.post("/groups/nobody/inbox", content=b"{}", headers=BROWSER)
        assert missing.status_code == 404 and "error" in missing.json()


TEXT_405 = "This address does not take that kind of request; nothing was changed."


async def test_405_403_413_pages_keep_their_headers_and_reasons(database_url: str) -> None:
    async with fedi_with_test_routes(database_url) as http:
        page = await http.post("/", headers=BROWSER)
        assert page.status_code == 405 and set(page.headers["allow"].split(", ")) == {"GET", "HEAD"}
        _in_layout(page, "Not here")
        forbidden = await http.get("/test/forbidden", headers=BROWSER)
        assert forbidden.status_code == 403
        _in_layout(forbidden, "Not allowed")
        assert "Only the group&#39;s moderators may pin a thread." in forbidden.text
        large = await http.post("/test/large", headers=BROWSER)
        assert large.status_code == 413
        _in_layout(large, "Too large")
        assert "nothing was changed" in large.text


async def test_a_500_shows_a_request_id_and_nothing_of_the_exception(
    database_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    async with fedi_with_test_routes(database_url) as http:
        with caplog.at_level(logging.ERROR, logger="fedi.web.errors"):
            page = await http.get("/test/boom", headers=BROWSER)
            peer = await http.get("/test/boom", headers=AP)
    assert page.status_code == 500
    _in_layout(page, "Something went wrong")
    request_id = page.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", request_id)
    assert f'<code class="request-id">{request_id}</code>' in page.text
    for leak in ("hunter2", "RuntimeError", "Traceback", "could not connect", "/test/boom"):
        assert leak not in page.text and leak not in peer.text
    assert peer.status_code == 500
    assert peer.json() == {"error": "internal server error",
                           "request_id": peer.headers["x-request-id"]}
    assert peer.headers["x-request-id"] != request_id
    # The admin finds each failure, with its traceback, by the id the person quotes.
    logged = [r for r in caplog.records if r.name == "fedi.web.errors"]
    assert [request_id in r.getMessage() for r in logged] == [True, False]
    assert peer.headers["x-request-id"] in logged[1].getMessage()
    assert logged[0].exc_info is not None and "RuntimeError" in caplog.text
