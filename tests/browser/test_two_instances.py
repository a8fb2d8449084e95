"""Two real fedi instances and a browser: a reply written by a member on the second instance
shows on the thread's page on the first. (Today after a reload; once the thread page is
live, the same scenario waits for it without one: see tests/browser/README.md.)"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import Site, record, unique
from tests.support.instance import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.federation]


async def test_a_reply_from_another_instance_shows_on_the_thread_page(
    page: Page, site: Site, second_site: Site
) -> None:
    owner, member, group = unique("olive"), unique("remy"), unique("cats")
    site.instance.cli("create-user", owner)
    site.instance.cli("create-group", group, "--owner", owner, "--title", "Cats")
    second_site.instance.cli("create-user", member)
    second_site.instance.cli("follow", "--as", member, f"@{group}@{site.domain}")

    async def joined() -> bool:
        rows = await second_site.instance.query(
            "SELECT f.state FROM follows f JOIN actors t ON t.id = f.target_id "
            "WHERE t.uri = :uri", uri=f"{site.base_url}/groups/{group}")
        return rows == [("accepted",)]

    await eventually(joined, what="the member on the second instance joined")
    thread = site.instance.cli("post", "--as", owner, "--group", group, "--title",
                               "Favourite naps", "Where does yours sleep?").stdout.strip()

    async def delivered() -> bool:
        return bool(await second_site.instance.query(
            "SELECT 1 FROM posts WHERE uri = :uri", uri=thread))

    await eventually(delivered, what="the thread delivered to the member's instance")
    second_site.instance.cli("post", "--as", member, "--group", f"@{group}@{site.domain}",
                             "--reply-to", thread, "On the radiator, always.")

    await page.goto(thread)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Favourite naps")
    reply = page.get_by_text("On the radiator, always.")

    async def reply_shown() -> bool:
        await page.reload()
        return await reply.count() == 1

    await eventually(reply_shown, interval=0.5, what="the remote reply on the thread page")
    # Its author is the member on the second instance: the link names them (directly, or
    # through this site's look-up page).
    author = page.get_by_role("link", name=member, exact=True)
    href = await author.get_attribute("href")
    assert href and f"{second_site.base_url}/users/{member}" in unquote(href), href
    await record(page, "thread-with-remote-reply")
