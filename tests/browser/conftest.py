"""Fixtures for the real-browser tests.

Per test module (each module runs in its own event loop: put
`pytestmark = pytest.mark.asyncio(loop_scope="module")` at the top of every test module):
- `site`: a real `fedi serve` on loopback, registration open, on this run's database kind;
- `second_site`: another fedi instance, started only for the modules that ask for it;
- `browser`: one headless Chromium (Debian's), shared by the module's tests.
Per test: `page`, a fresh browser profile on `site`; a failed test leaves a screenshot of
where it stopped.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from tests.browser.support import (
    Site,
    assert_no_page_problems,
    current_test_dir,
    launch,
    open_page,
    running_site,
    snap,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)  # the page fixture reads report_call
    return report


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    async with running_site(tmp_path_factory.mktemp("site"), "site") as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def second_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    async with running_site(tmp_path_factory.mktemp("second"), "second") as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await launch(playwright)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser, site: Site, request: pytest.FixtureRequest
               ) -> AsyncIterator[Page]:
    shutil.rmtree(current_test_dir(), ignore_errors=True)  # no screenshots from older runs
    context, opened = await open_page(browser, site)
    try:
        yield opened
        call = getattr(request.node, "report_call", None)
        if call is not None and call.failed and not opened.is_closed():
            await snap(opened, "failure")
        elif call is not None and call.passed:
            assert_no_page_problems(opened)  # e.g. a CSP violation after the last check
    finally:
        await context.close()
