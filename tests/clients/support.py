"""Two real fedi servers for the real-client tests, and the things a person does around a
client: signing in on the web and authorising the app in a real browser, and someone on the
other server posting and replying.

Server A holds the person the client signs in as (`tess`, and `rory`, a second person);
server B holds the groups (`club`, open, and `quiet`, private, both owned by `bo`).
Everything between them is real HTTP with real signatures and real delivery workers, so
remote effects are polled for.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import Page, Route, async_playwright
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from fedi.accounts.login import set_password
from fedi.accounts.passwords import Hasher
from fedi.actors.local import create_group, create_user
from fedi.urls import Urls
from tests.browser.support import launch, log_in, snap
from tests.support.instance import FediInstance, eventually

PASSWORD = "correct horse battery"
OOB = "urn:ietf:wg:oauth:2.0:oob"
SCOPES = ["read", "write", "follow", "push"]
# Cheap argon2 (here and in make_people): these tests are about clients, not hashing.
FAST = {"FEDI_PASSWORD_TIME_COST": "1", "FEDI_PASSWORD_MEMORY_KIB": "1024"}
CLIENTS_DIR = Path(__file__).resolve().parent
INSTALL_HINT = "run scripts/test.sh, which installs it (or scripts/install-client-deps.sh)"


def marker(stem: str) -> str:
    """A word no other post contains, to find a post again in a listing or a stream."""
    return f"{stem}{uuid.uuid4().hex[:10]}"


@dataclass
class World:
    a: FediInstance
    b: FediInstance
    user: str = "tess"
    other: str = "rory"
    owner: str = "bo"
    group: str = "club"
    private_group: str = "quiet"

    @property
    def group_handle(self) -> str:
        return f"@{self.group}@{self.b.domain}"

    async def on_b(self, *args: str) -> str:
        """A `fedi` command on server B (in a thread: the event loop keeps serving)."""
        done = await asyncio.to_thread(self.b.cli, *args)
        return done.stdout.strip()

    async def owner_posts_thread(self, title: str, text: str, group: str | None = None
                                 ) -> str:
        """bo, on B, opens a thread in the group (club unless named); returns its URI."""
        return await self.on_b("post", "--as", self.owner, "--group", group or self.group,
                               "--title", title, text)

    async def owner_approves(self, group: str) -> None:
        """bo accepts tess's request to join `group` on B."""
        await self.on_b("mod", "approve", "--as", self.owner, group,
                        f"@{self.user}@{self.a.domain}")

    async def owner_replies(self, to_uri: str, text: str) -> str:
        """bo, on B, answers a post of the group, mentioning the person on A as Mastodon
        replies do; returns the reply's URI."""
        return await self.on_b("post", "--as", self.owner, "--group", self.group,
                               "--reply-to", to_uri, "--mention",
                               f"@{self.user}@{self.a.domain}", text)

    async def group_has_post(self, text: str) -> str | None:
        """The URI of the post in B's group whose content contains `text`, once B has it."""
        rows = await self.b.query(
            "SELECT p.uri FROM posts p JOIN actors g ON g.id = p.group_id "
            "WHERE g.username = :group AND g.local AND p.content LIKE :text "
            "AND p.deleted_at IS NULL", group=self.group, text=f"%{text}%")
        return str(rows[0][0]) if rows else None

    async def wait_for_post_on_b(self, text: str) -> str:
        found: str = await eventually(lambda: self.group_has_post(text), timeout=60,
                                      what=f"a post containing {text!r} in {self.group} on B")
        return found


async def make_people(instance: FediInstance, people: tuple[str, ...],
                      group: tuple[str, str] | None = None, *,
                      private_group: tuple[str, str] | None = None) -> None:
    """Local people with the test password, and a group (name, owner), written with the use
    cases `fedi create-user`, `set-password` and `create-group` call: in this process, since
    each `fedi` command costs seconds on a busy machine."""
    engine = create_async_engine(instance.database_url)
    hasher = Hasher(time_cost=1, memory_kib=1024)
    urls = Urls(instance.base_url)
    try:
        async with AsyncSession(engine) as session, session.begin():
            for name in people:
                await set_password(session, hasher, await create_user(session, urls, name),
                                   PASSWORD)
            if group is not None:
                await create_group(session, urls, group[0], owner=group[1])
            if private_group is not None:  # members-only posts, joined by approval
                await create_group(session, urls, private_group[0], owner=private_group[1],
                                   privacy="private")
    finally:
        await engine.dispose()


async def start_world(instances: list[FediInstance]) -> World:
    """A with tess and rory, B with bo, the open group club and the private group quiet
    (joined by approval); both serving (each `fedi serve` migrates its new database and
    runs its delivery worker)."""
    a, b, _ = instances
    world = World(a, b)
    await asyncio.gather(asyncio.to_thread(a.start, env=FAST),
                         asyncio.to_thread(b.start, env=FAST))
    await make_people(a, (world.user, world.other))
    await make_people(b, (world.owner,), (world.group, world.owner),
                      private_group=(world.private_group, world.owner))
    return world


async def password_token(base_url: str, name: str) -> str:
    """A bearer token for local person `name`, the way a script gets one: register an app,
    then the password grant."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        app = await http.post("/api/v1/apps", data={
            "client_name": "a script", "redirect_uris": OOB, "scopes": "read write"})
        assert app.status_code == 200, app.text
        token = await http.post("/oauth/token", data={
            "grant_type": "password", "username": name, "password": PASSWORD,
            "client_id": app.json()["client_id"], "client_secret": app.json()["client_secret"],
            "scope": "read write"})
        assert token.status_code == 200, token.text
        return str(token.json()["access_token"])


# --- a person authorising an app in a real browser ----------------------------------------


def code_in(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("code")
    return values[0] if values else None


@dataclass
class Authorized:
    code: str
    state: str | None = None


async def authorize_in_browser(world: World, authorize_url: str, redirect_uri: str
                               ) -> Authorized:
    """What a person does when an app sends them to the server: log in on A's web pages,
    open the app's authorize URL, read the consent page and press Authorize. Returns the
    code (and the state), read from the redirect (a loopback app URL, caught before it
    leaves the browser) or from the out-of-band page the server shows for OOB."""
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            context = await browser.new_context(base_url=world.a.base_url)
            page = await context.new_page()
            redirected: list[str] = []
            if redirect_uri != OOB:
                async def catch(route: Route) -> None:
                    redirected.append(route.request.url)
                    await route.fulfill(status=200, content_type="text/html",
                                        body="<!doctype html><title>app</title><p>back in the app")
                await context.route(f"{redirect_uri}*", catch)
            await page.goto("/login")
            await log_in(page, world.user, PASSWORD)
            await page.goto(authorize_url)
            await snap(page, "consent")
            button = page.get_by_role("button", name=re.compile(r"^\s*authori[sz]e", re.I))
            assert await button.count() == 1, (
                f"no single Authorize button on the consent page {page.url}:\n"
                f"{(await page.content())[:2000]}")
            await button.click()
            if redirect_uri != OOB:
                await eventually(lambda: redirected, timeout=30,
                                 what=f"the browser sent back to {redirect_uri}")
                code = code_in(redirected[0])
                assert code, f"the redirect carries no code: {redirected[0]}"
                state = parse_qs(urlsplit(redirected[0]).query).get("state", [None])[0]
                return Authorized(code, state)
            await page.wait_for_load_state()
            await snap(page, "out-of-band-code")
            return Authorized(await _code_on_page(page))
        finally:
            await browser.close()


async def _code_on_page(page: Page) -> str:
    """The code on the out-of-band page: in its URL (as Mastodon's /oauth/authorize/native
    does), in a read-only field, or in a <code> element."""
    from_url = code_in(page.url)
    if from_url:
        return from_url
    field = page.locator("input[readonly]")
    if await field.count():
        value = await field.first.input_value()
        if value.strip():
            return value.strip()
    shown = page.locator("code")
    if await shown.count():
        text = (await shown.first.inner_text()).strip()
        if text:
            return text
    pytest.fail(f"no authorization code on the out-of-band page {page.url}:\n"
                f"{(await page.content())[:2000]}", pytrace=False)
