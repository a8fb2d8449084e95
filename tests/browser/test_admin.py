"""An instance admin in real Chromium (issue 9, "Tests that must exist"): uploads a Mastodon
domain-block CSV that suspends a second fedi instance, reads the preview (the membership it
would sever), applies it, sees the membership gone, undoes the import with one click; each
step is in the audit log under the admin. A signed-in person who is not an admin gets the
403 page at /admin.

CLI set-up only: making the signed-up admin an admin, the group, and the member on the
second instance who joins it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from tests.browser.support import (
    Site,
    account_nav,
    log_in,
    open_page,
    record,
    sign_up,
    unique,
)
from tests.support.instance import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.federation]

WAIT = 30_000  # ms: a busy machine serves slowly


@dataclass
class Setting:
    admin: str
    person: str
    remote: str
    group: str


async def cli(site: Site, *args: str) -> str:
    result = await asyncio.to_thread(site.instance.cli, *args)
    return result.stdout


@pytest.fixture(autouse=True, scope="module")
def patient_expectations() -> Iterator[None]:
    expect.set_options(timeout=WAIT)
    yield
    expect.set_options(timeout=None)


async def members_from(site: Site, group: str, domain: str) -> list[tuple[str]]:
    return await site.instance.query(
        "SELECT a.uri FROM follows f JOIN actors a ON a.id = f.follower_id "
        "JOIN actors g ON g.id = f.target_id WHERE g.uri = :group AND a.domain = :domain "
        "AND f.state = 'accepted'", group=f"{site.base_url}/groups/{group}", domain=domain)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setting(browser: Browser, site: Site, second_site: Site) -> AsyncIterator[Setting]:
    s = Setting(admin=unique("ada"), person=unique("pete"), remote=unique("remo"),
                group=unique("birds"))
    context, page = await open_page(browser, site)
    try:
        for name in (s.admin, s.person):
            await sign_up(page, name)
    finally:
        await context.close()
    await cli(site, "admin", "users", "make-admin", s.admin)
    await cli(site, "create-group", s.group, "--owner", s.person, "--title", "Birds",
              "--join", "open")
    await cli(second_site, "create-user", s.remote)
    await cli(second_site, "follow", "--as", s.remote, f"@{s.group}@{site.domain}")

    async def joined() -> bool:
        return len(await members_from(site, s.group, second_site.domain)) == 1

    await eventually(joined, what="the second instance's member joined")
    yield s


async def signed_in(page: Page, name: str) -> None:
    await log_in(page, name)
    await expect(account_nav(page).get_by_role("link", name=name)).to_be_visible()


async def fits_a_phone(page: Page, name: str) -> None:
    """At 390 px the page scrolls down only: long addresses wrap, tables fit."""
    await page.set_viewport_size({"width": 390, "height": 844})
    try:
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        await record(page, name)
        assert width <= 390, f"{page.url} is {width} px wide on a 390 px phone"
    finally:
        await page.set_viewport_size({"width": 1280, "height": 800})


async def test_a_non_admin_gets_the_403_page(page: Page, setting: Setting) -> None:
    await signed_in(page, setting.person)
    response = await page.goto("/admin")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    await expect(page.get_by_text("Only the instance's admins may use the admin pages")
                 ).to_be_visible()
    await expect(page.get_by_role("navigation", name="Admin sections")).to_have_count(0)
    await record(page, "admin-refused")


async def test_blocklist_upload_preview_apply_undo(
    page: Page, site: Site, second_site: Site, setting: Setting
) -> None:
    s = setting
    blocked = second_site.domain  # host:port, as the CSV may name it
    await signed_in(page, s.admin)
    await page.goto("/admin")
    await record(page, "admin-home")
    nav = page.get_by_role("navigation", name="Admin sections")
    await nav.get_by_role("link", name="Blocklist import").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Blocklist import")
    await record(page, "import-form")

    csv = ("#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n"
           f"{blocked},suspend,true,false,Spam wave,false\n"
           "noisy.example,silence,false,false,Too loud,false\n")
    await page.get_by_label("Mastodon domain-block CSV").set_input_files(
        files=[{"name": "domain_blocks.csv", "mimeType": "text/csv",
                "buffer": csv.encode()}])
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_role("heading", level=2, name="Preview")).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text(
        "2 new, 0 changed, 0 unchanged; suspensions would sever 1 membership(s)")
    await expect(page.get_by_role("status")).to_contain_text("Nothing has been changed yet.")
    table = page.get_by_role("table", name="What applying it does, per domain")
    row = table.get_by_role("row", name=blocked)
    await expect(row.get_by_role("cell")).to_have_text(["2", "new", "suspend", "-", "1", "0"])
    await expect(table.get_by_role("row", name="noisy.example").get_by_role("cell")
                 ).to_have_text(["3", "new", "silence", "-", "0", "0"])
    await record(page, "import-preview")
    await fits_a_phone(page, "import-preview-phone")
    # The preview wrote nothing.
    assert len(await members_from(site, s.group, blocked)) == 1
    assert await site.instance.query("SELECT domain FROM domain_blocks") == []

    await page.get_by_role("button", name="Apply this import").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Done")
    await expect(page.get_by_role("status")).to_contain_text(
        "2 new, 0 changed, 0 unchanged; severed 1 membership(s)")
    await record(page, "import-applied")
    assert await members_from(site, s.group, blocked) == []

    # The admin sees it: the block on the federation page, the member gone from the group.
    await page.goto("/admin/federation")
    blocks = page.get_by_role("region", name="Domain blocks")
    await expect(blocks.locator(f'li[id="block-{blocked}"]')).to_contain_text(
        "suspend")
    await expect(blocks).to_contain_text("Public reason: Spam wave")
    await record(page, "federation-blocked")
    await page.goto(f"/admin/groups/{s.group}")
    members = page.get_by_role("region", name="Members")
    await expect(members).to_contain_text(f"{s.person}")
    await expect(members).not_to_contain_text(s.remote)
    await record(page, "group-member-severed")

    # One click undoes it.
    await page.goto("/admin/federation/import")
    await page.get_by_role("button", name="Undo the last import").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Done")
    await expect(page.get_by_role("status")).to_contain_text("restored 2 domain(s)")
    await record(page, "import-undone")
    assert await site.instance.query("SELECT domain FROM domain_blocks") == []
    await page.goto("/admin/federation")
    await expect(page.get_by_role("region", name="Domain blocks")).to_contain_text(
        "No domain is blocked.")

    # Undo again: nothing left to undo, said plainly, nothing changed.
    await page.goto("/admin/federation/import")
    await page.get_by_role("button", name="Undo the last import").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Nothing was changed")
    await expect(page.get_by_role("alert")).to_be_visible()
    await record(page, "import-nothing-to-undo")

    # The audit log names the admin for each step.
    await page.goto("/admin/audit")
    await page.get_by_label("Action (or a prefix ending in a dot)").fill("domain_block.")
    await page.get_by_role("button", name="Filter").click()
    rows = page.get_by_role("table").get_by_role("row")
    admin_uri = f"{site.base_url}/users/{s.admin}"
    for action in ("domain_block.import", "domain_block.undo_import"):
        row = rows.filter(has=page.get_by_role("cell", name=action, exact=True))
        await expect(row).to_have_count(1)
        await expect(row.get_by_role("cell", name=admin_uri, exact=True)).to_be_visible()
    await record(page, "audit")
    await fits_a_phone(page, "audit-phone")
