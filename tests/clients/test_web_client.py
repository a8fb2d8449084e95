"""masto.js in a real browser page on another origin, as Elk and Phanpy run it: every call is
a cross-origin request from Chromium, so CORS on the API, the token endpoint, app
registration and the discovery documents, the exposed Link header, and the streaming
WebSocket with the token as its subprotocol (which Chrome drops unless the server echoes it)
are what a person in such an app gets.

The app is served from another loopback port by a plain file server, so the page and fedi
are in the same address space and only CORS decides."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright

from tests.browser.support import launch
from tests.clients.support import (
    CLIENTS_DIR,
    FAST,
    INSTALL_HINT,
    PASSWORD,
    make_people,
    marker,
    password_token,
)
from tests.support.instance import FediInstance

pytestmark = pytest.mark.federation

MODULES = CLIENTS_DIR / "masto_js" / "node_modules"
IMPORTS = {
    "masto": "/m/masto/dist/index.js",
    "change-case": "/m/change-case/dist/index.js",
    "events-to-async": "/m/events-to-async/module/events-to-async.js",
    "ts-custom-error": "/m/ts-custom-error/dist/custom-error.mjs",
}
PAGE = ("<!doctype html><html lang=en><title>web client</title>"
        f'<script type="importmap">{json.dumps({"imports": IMPORTS})}</script>'
        "<p>a Mastodon web client</p></html>")

SIGN_IN = """
async ({ url, username, password, group }) => {
  const { createOAuthAPIClient, createRestAPIClient } = await import("masto");
  for (const path of ["/.well-known/nodeinfo", "/.well-known/host-meta",
                      "/.well-known/oauth-authorization-server"]) {
    const answer = await fetch(url + path);
    if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
  }
  const app = await createRestAPIClient({ url }).v1.apps.create({
    clientName: "fedi web client test", redirectUris: "urn:ietf:wg:oauth:2.0:oob",
    scopes: "read write follow push" });
  const token = await createOAuthAPIClient({ url }).token.create({
    grantType: "password", clientId: app.clientId, clientSecret: app.clientSecret,
    redirectUri: "urn:ietf:wg:oauth:2.0:oob", username, password,
    scope: "read write follow push" });
  const masto = createRestAPIClient({ url, accessToken: token.accessToken });
  const me = await masto.v1.accounts.verifyCredentials();
  const instance = await masto.v2.instance.fetch();
  const porch = await masto.v1.accounts.lookup({ acct: group });
  const relation = await masto.v1.accounts.$select(porch.id).follow();
  const posted = [];
  for (const word of ["first", "second"]) {
    posted.push(await masto.v1.statuses.create({
      status: `@${group} ${word} from the browser`, visibility: "public" },
      { headers: { "Idempotency-Key": crypto.randomUUID() } }));
  }
  const pages = masto.v1.timelines.home.list({ limit: 1 }).values();
  const first = (await pages.next()).value;
  const second = (await pages.next()).value;
  window.fedi = { masto, token: token.accessToken,
                  streaming: instance.configuration.urls.streaming };
  return { username: me.username, group: porch.group, following: relation.following,
           pages: [first?.map((s) => s.id), second?.map((s) => s.id)],
           postedIds: posted.map((s) => s.id) };
}
"""

OPEN_STREAM = """
async () => {
  const { createStreamingAPIClient } = await import("masto");
  const { streaming, token } = window.fedi;
  window.fedi.seen = [];
  let opened;
  const open = new Promise((resolve, reject) => { opened = { resolve, reject }; });
  class Watched extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => opened.resolve(this.protocol));
      this.addEventListener("error", () => opened.reject(new Error("the WebSocket failed")));
    }
  }
  const stream = createStreamingAPIClient({ streamingApiUrl: streaming, accessToken: token,
                                            implementation: Watched, retry: 1 });
  window.fedi.stream = stream;
  (async () => {
    for await (const event of stream.user.subscribe()) window.fedi.seen.push(event);
  })().catch((error) => window.fedi.seen.push({ event: "failed", error: String(error) }));
  return await open;
}
"""

STREAMED = """
async (text) => {
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    for (const e of window.fedi.seen) {
      if (e.event === "failed") throw new Error(e.error);
      const status = e.event === "notification" ? e.payload.status : e.payload;
      if (status && (status.reblog ?? status).content?.includes(text)) {
        window.fedi.stream.close();
        return e.event;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error("no event carrying the reply: " + JSON.stringify(window.fedi.seen));
}
"""


class AppFiles(SimpleHTTPRequestHandler):
    """The web client's files: the page, and masto.js with its three dependencies."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(MODULES), **kwargs)

    def do_GET(self) -> None:
        if self.path == "/":
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not self.path.startswith("/m/"):
            self.send_error(404)
            return
        self.path = self.path[2:]
        super().do_GET()

    def guess_type(self, path: Any) -> str:
        return "text/javascript" if str(path).endswith((".js", ".mjs")) else "text/plain"

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def app_origin() -> Iterator[str]:
    """The web client served from its own loopback port (another origin than fedi's, in the
    same address space, so Chromium's local-network rules stay out of it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), AppFiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_masto_js_in_a_browser_page_on_another_origin(
    instances: list[FediInstance],
) -> None:
    if not (MODULES / "masto" / "package.json").is_file():
        pytest.fail(f"masto.js is not installed: {INSTALL_HINT}", pytrace=False)
    a = instances[0]
    a.start(env=FAST)
    await make_people(a, ("tess", "rory"), ("porch", "rory"))

    problems: list[str] = []
    with app_origin() as origin:
        assert origin != a.base_url
        async with async_playwright() as playwright:
            browser = await launch(playwright)
            try:
                page = await browser.new_page()
                page.on("console", lambda m: problems.append(m.text) if m.type == "error"
                        else None)
                page.on("pageerror", lambda e: problems.append(f"script error {e}"))
                await page.goto(f"{origin}/")

                done = await _run(page, SIGN_IN, {"url": a.base_url, "username": "tess",
                                                  "password": PASSWORD, "group": "porch"},
                                  problems)
                assert done["username"] == "tess" and done["group"] is True, done
                assert done["following"] is True, done  # a local open group: joined at once
                first, second = done["pages"]
                assert first and second and len(first) == len(second) == 1, done
                # Newest first: the second post, then (through the exposed Link header) the
                # first one.
                assert first == [done["postedIds"][1]], done
                assert second == [done["postedIds"][0]], done

                protocol = await _run(page, OPEN_STREAM, None, problems)
                assert protocol, "the server chose no subprotocol: Chrome would drop it"
                # rory answers from another app (on SQLite a `fedi post` from a second
                # process reaches no stream: live events are in-process there).
                text = marker("porchreply")
                async with httpx.AsyncClient(base_url=a.base_url, timeout=30, headers={
                        "Authorization": f"Bearer {await password_token(a.base_url, 'rory')}",
                }) as rory:
                    answer = await rory.post("/api/v1/statuses", json={
                        "status": f"@tess Seen it {text}",
                        "in_reply_to_id": done["postedIds"][1]})
                    assert answer.status_code == 200, answer.text
                assert await _run(page, STREAMED, text, problems) in ("update", "notification")
            finally:
                await browser.close()
    assert not [p for p in problems if "CORS" in p or "Access-Control" in p], problems


async def _run(page: Any, script: str, arg: Any, problems: list[str]) -> Any:
    try:
        return await page.evaluate(script, arg)
    except Exception as error:  # the page's own error, with what the browser logged
        pytest.fail(f"in the browser: {error}\nconsole: {problems}", pytrace=False)

