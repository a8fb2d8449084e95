"""Real-browser helpers: Debian's Chromium driven by Playwright (async API), axe-core in the
page, screenshots kept as test artefacts, and real `fedi serve` processes to point them at.

Nothing here skips: a missing browser or axe-core fails the test with what to install.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Playwright
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from fedi.accounts import registration
from tests.support.databases import create_database, drop_database
from tests.support.instance import FediInstance

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
INSTALL_HINT = "run scripts/test.sh, which installs it (or scripts/install-browser-deps.sh)"
PASSWORD = "correct horse battery"
# Cheap argon2 for a browser suite that does not test hashing (tests/accounts does).
FAST_HASHING = {"FEDI_PASSWORD_TIME_COST": "1", "FEDI_PASSWORD_MEMORY_KIB": "1024"}
SERIOUS = ("serious", "critical")


def chromium_path() -> str:
    """Debian's chromium, looked up at run time. Missing is a failure, never a skip: CI must
    run these tests on every database."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"Chromium is not installed (Debian package `chromium`): {INSTALL_HINT}",
                pytrace=False)


async def launch(playwright: Playwright) -> Browser:
    return await playwright.chromium.launch(executable_path=chromium_path(), headless=True)


# --- a real fedi to browse -------------------------------------------------------------


@dataclass
class Site:
    """A running `fedi serve` with open registration."""

    instance: FediInstance

    @property
    def base_url(self) -> str:
        return self.instance.base_url

    @property
    def domain(self) -> str:
        return self.instance.domain


@contextlib.asynccontextmanager
async def running_site(workdir: Path, name: str) -> AsyncIterator[Site]:
    """`fedi serve` in the existing directory `workdir`, on a held loopback port and its own
    SQLite file or PostgreSQL database (FEDI_TEST_DATABASE_URL), registration open; stopped
    and its database dropped afterwards."""
    url = await create_database(workdir, name)
    instance = FediInstance(name, url, workdir)
    try:
        instance.start(env=FAST_HASHING)  # serve migrates the new database
        await open_registration(url)
        yield Site(instance)
    finally:
        instance.stop()
        await drop_database(url)


async def open_registration(database_url: str) -> None:
    """What `fedi admin registrations open` does, without starting another Python process
    (seconds each on a busy machine)."""
    engine = create_async_engine(database_url)
    try:
        async with AsyncSession(engine) as session, session.begin():
            await registration.set_mode(session, "open")
    finally:
        await engine.dispose()


_names = itertools.count(1)


def unique(stem: str) -> str:
    """A user name no other test on the same (module-shared) server has taken."""
    return f"{stem}{os.getpid() % 1000}x{next(_names)}"


# --- pages -------------------------------------------------------------------------------

# What the browser said about each page that a test must not ignore.
_problems: WeakKeyDictionary[Page, list[str]] = WeakKeyDictionary()


async def open_page(browser: Browser, site: Site) -> tuple[BrowserContext, Page]:
    """A fresh browser profile (no cookies) on `site`, watching for CSP violations and
    script errors: the site's CSP stays enforced, so a page that needs inline script or
    style shows up here as it would for a person."""
    context = await browser.new_context(base_url=site.base_url,
                                        viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    problems: list[str] = []
    _problems[page] = problems

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"{page.url}: script error {error}"))
    return context, page


def page_problems(page: Page) -> list[str]:
    return list(_problems.get(page, []))


def assert_no_page_problems(page: Page) -> None:
    problems = page_problems(page)
    assert not problems, "the browser reported:\n" + "\n".join(problems)


# --- artefacts ---------------------------------------------------------------------------


def artifacts_dir() -> Path:
    return Path(os.environ.get("FEDI_TEST_ARTIFACTS") or ROOT / "test-artifacts")


def current_test_dir() -> Path:
    """screenshots/<module>/<test>, from the test pytest is running now."""
    running = os.environ.get("PYTEST_CURRENT_TEST", "unknown::unknown").rsplit(" ", 1)[0]
    path, _, test = running.partition("::")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", test) or "unknown"
    return artifacts_dir() / "screenshots" / Path(path).stem / safe


async def snap(page: Page, name: str) -> Path:
    """A full-page screenshot kept as a test artefact; returns its path."""
    target = current_test_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(target), full_page=True)
    return target


# --- accessibility -------------------------------------------------------------------------


def axe_source() -> str:
    if not AXE_JS.is_file():
        pytest.fail(f"axe-core is not installed ({AXE_JS.relative_to(ROOT)}): {INSTALL_HINT}",
                    pytrace=False)
    return AXE_JS.read_text(encoding="utf-8")


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, all rules on.

    axe is put into the page through the DevTools protocol, which the page's CSP does not
    govern: `add_script_tag` would be an inline script the CSP (rightly) refuses, and
    `bypass_csp=True` would switch the CSP off for the site's own markup as well.
    """
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        cdp = await page.context.new_cdp_session(page)
        try:
            await cdp.send("Runtime.evaluate", {"expression": axe_source()})
        finally:
            await cdp.detach()
    result: list[dict[str, Any]] = await page.evaluate(
        "async () => (await window.axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return result


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: "
                         f"{node.get('failureSummary', '').replace(chr(10), ' ')}")
    return "\n".join(lines)


async def assert_accessible(page: Page) -> None:
    """Fail listing every serious or critical axe-core violation on the page."""
    bad = [v for v in await axe_violations(page) if v.get("impact") in SERIOUS]
    assert not bad, f"accessibility violations on {page.url}:\n{describe(bad)}"
    assert_no_page_problems(page)


async def record(page: Page, name: str) -> None:
    """What each page of a browser test gets: a screenshot, then the accessibility check."""
    await snap(page, name)
    await assert_accessible(page)


# --- what a person does ----------------------------------------------------------------------


async def sign_up(page: Page, name: str, password: str = PASSWORD) -> None:
    """Fill and send the sign-up form as a person would; lands on the login page."""
    await page.goto("/signup")
    await page.get_by_label("User name", exact=True).fill(name)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign up").click()
    await page.wait_for_url("**/login?m=login")


async def log_in(page: Page, name: str, password: str = PASSWORD) -> None:
    """Fill and send the login form from wherever the page is (goes to /login if needed)."""
    if "/login" not in page.url:
        await page.goto("/login")
    await page.get_by_label("User name", exact=True).fill(name)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_load_state()


def account_nav(page: Page) -> Any:
    """The header's account links: the signed-in name, or Log in · Sign up."""
    return page.get_by_role("navigation", name="Account")
