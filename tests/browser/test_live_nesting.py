"""Live replies in real Chromium: a reply that arrives while a thread page is open goes under
the post it answers (in that post's replies, made if it had none) with the actions a loaded
reply has, and the reply counts above it go up, without a reload; after a reload the page
draws the same tree. Replies are written by a second member in a second browser."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.browser.support import (
    Site,
    account_nav,
    log_in,
    open_page,
    record,
    sign_up,
    unique,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT = 30_000  # ms: a busy machine serves slowly
LIVE_WAIT = 60_000  # ms: post → commit → event → fragment → page


@pytest.fixture(autouse=True, scope="module")
def patient_expectations() -> Iterator[None]:
    expect.set_options(timeout=WAIT)
    yield
    expect.set_options(timeout=None)


async def cli(site: Site, *args: str) -> str:
    """A `fedi` command on `site`, off the event loop (the browser keeps running)."""
    return (await asyncio.to_thread(site.instance.cli, *args)).stdout


def article(page: Page, post_id: int) -> Locator:
    return page.locator(f"article#p{post_id}")


def replies_of(post: Locator) -> Locator:
    """The replies drawn directly under a post."""
    return post.locator(":scope > details.replies > article.reply")


def count_of(post: Locator) -> Locator:
    return post.locator(":scope > details.replies > summary")


async def post_id(site: Site, uri: str) -> int:
    rows = await site.instance.query("SELECT id FROM posts WHERE uri = :uri", uri=uri)
    return int(rows[0][0])


async def write_reply(page: Page, url: str, text: str) -> int:
    """Reply from the reply page of the post at `url` (the link a nested post offers, or
    the thread's own reply box): the new post's id, from the page it lands on."""
    await page.goto(url)
    await page.get_by_label("Your reply").fill(text)
    await page.get_by_role("button", name="Post reply").click()
    focused = page.locator("article.reply[aria-current=true]")
    await expect(focused.locator(":scope > .content")).to_have_text(text)
    return int((await focused.get_attribute("id") or "p0").removeprefix("p"))


async def test_a_live_reply_is_nested_under_the_post_it_answers_with_its_actions(
    page: Page, browser: Browser, site: Site
) -> None:
    owner, reader, other, group = unique("olga"), unique("rita"), unique("otto"), unique("g")
    await cli(site, "create-user", owner)
    await cli(site, "create-group", group, "--owner", owner, "--title", "Naps", "--join", "open")
    thread = (await cli(site, "post", "--as", owner, "--group", group, "--title", "Sofas",
                        "Which sofa is best?")).strip()
    thread_id = await post_id(site, thread)

    # Two members, each in their own browser: the reader keeps the thread open (JavaScript
    # on); the other writes. Posts written here go live through this server's process.
    await join_as(page, reader, group)
    context, writer = await open_page(browser, site)
    try:
        await join_as(writer, other, group)
        await page.goto(thread)
        root = article(page, thread_id)
        await expect(root.locator(":scope > .content")).to_have_text("Which sofa is best?")
        await expect(count_of(root)).to_have_count(0)  # no replies yet

        # A reply to the thread: under it, in a replies list made for it, "1 reply".
        first_id = await write_reply(writer, f"/posts/{thread_id}/reply", "The green one.")
        await expect(replies_of(root)).to_have_count(1, timeout=LIVE_WAIT)
        await expect(count_of(root)).to_have_text("1 reply")
        await expect(page.get_by_role("status")).to_have_text(f"New post by {other}.")

        # An answer to that reply: under the reply, not the thread; both counts go up.
        answer_id = await write_reply(writer, f"/posts/{first_id}/reply",
                                      "Agreed, the green one.")
        under_first = replies_of(article(page, first_id))
        await expect(under_first).to_have_count(1, timeout=LIVE_WAIT)
        nested = article(page, answer_id)
        await expect(nested).to_have_class("reply live-new")
        await expect(nested.locator(":scope > .content")).to_have_text("Agreed, the green one.")
        await expect(count_of(article(page, first_id))).to_have_text("1 reply")
        await expect(count_of(root)).to_have_text("2 replies")
        # The same actions as a loaded reply: like, a link to its reply page, report.
        actions = nested.locator(":scope > .post-actions")
        like = actions.get_by_role("button", name=f"Like this post by {other}")
        await expect(like).to_be_visible()
        await expect(actions.get_by_role("link", name=f"Report this post by {other}")
                     ).to_be_visible()
        await expect(actions.get_by_role("link", name=f"Reply to {other}")).to_have_attribute(
            "href", f"/posts/{answer_id}/reply")
        await record(page, "live-reply-nested")

        # A second reply to the thread joins the thread's replies, after the first.
        late_id = await write_reply(writer, f"/posts/{thread_id}/reply", "The red one.")
        await expect(replies_of(root)).to_have_count(2, timeout=LIVE_WAIT)
        await expect(replies_of(root).last).to_have_attribute("id", f"p{late_id}")
        await expect(count_of(root)).to_have_text("3 replies")
    finally:
        await context.close()

    # Liked from its live-drawn button, as from a loaded one: back on the thread page.
    await like.click()
    await expect(page).to_have_url(f"{thread}#p{answer_id}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sofas")
    await expect(article(page, answer_id).locator(":scope > .meta")).to_contain_text("1 like")

    # Reloaded, the page draws the same tree.
    await page.goto(thread)
    await expect(replies_of(article(page, first_id))).to_have_count(1)
    await expect(replies_of(article(page, first_id)).first).to_have_attribute(
        "id", f"p{answer_id}")
    await expect(count_of(root)).to_have_text("3 replies")

    # The nested reply's link leads to its reply form.
    await article(page, answer_id).locator(":scope > .post-actions").get_by_role(
        "link", name=f"Reply to {other}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Reply in Naps")
    await expect(page.get_by_role("region", name=f"Replying to {other}")).to_contain_text(
        "Agreed, the green one.")
    await record(page, "reply-page-from-link")


async def join_as(page: Page, name: str, group: str) -> None:
    """Sign up, log in and join the group, as a person does in the browser."""
    await sign_up(page, name)
    await log_in(page, name)
    await expect(account_nav(page).get_by_role("link", name=name)).to_be_visible()
    await page.goto(f"/groups/{group}")
    sidebar = page.get_by_role("complementary", name="About this group")
    await sidebar.get_by_role("button", name="Join Naps").click()
    await expect(sidebar.get_by_role("button", name="Leave Naps")).to_be_visible()
