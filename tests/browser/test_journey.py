"""A member's whole journey in real Chromium (issue 8, "Tests that must exist"), through the
pages only: sign up, find and join an open group, ask to join an approval group answering
its question, write a thread (Markdown, preview) and a reply (with JavaScript off), see a
reply from a member on a second fedi instance appear live, edit, like, report, delete, lose
a members-only post by leaving its group, log out.

What a newcomer could not do in the browser is set up with the CLI: the groups and their
owner, the moderator's approval, the member on the second instance and what they write.
The tests run in order and share one person (`Journey`); each opens a fresh browser profile
and logs in as a person would. Every page reached is screenshotted and checked with axe.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, expect

from tests.browser.support import (
    Site,
    account_nav,
    log_in,
    record,
    sign_up,
    snap,
    unique,
)
from tests.support.instance import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.federation]

WAIT = 30_000  # ms: a busy machine, and federation between two processes
LIVE_WAIT = 60_000  # ms: a remote reply goes inbox → worker → group → event → page


@dataclass
class Journey:
    """The module's people and groups, and what the earlier steps made."""

    person: str
    owner: str
    remote: str
    open_group: str
    open_title: str
    approval_group: str
    approval_title: str
    question: str = "Why do you want to join?"
    thread_url: str = ""
    thread_title: str = ""
    my_reply: str = ""
    remote_reply: str = ""
    reported: str = ""
    secret: str = ""
    done: set[str] = field(default_factory=set)

    def needs(self, step: str) -> None:
        assert step in self.done, f"this step builds on {step!r}, which did not pass"


async def cli(site: Site, *args: str) -> str:
    """A `fedi` command on `site`, off the event loop (the browser keeps running)."""
    result = await asyncio.to_thread(site.instance.cli, *args)
    return result.stdout


@pytest.fixture(autouse=True, scope="module")
def patient_expectations() -> Iterator[None]:
    """Each expectation waits up to WAIT here, not Playwright's 5 s: a page served by a busy
    machine is slow, not wrong. Put back for the other modules."""
    expect.set_options(timeout=WAIT)
    yield
    expect.set_options(timeout=None)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def journey(site: Site, second_site: Site) -> AsyncIterator[Journey]:
    tag = unique("j")
    j = Journey(person=unique("pat"), owner=unique("olga"), remote=unique("remy"),
                open_group=unique("naps"), open_title=f"Nap club {tag}",
                approval_group=unique("quiet"), approval_title=f"Quiet room {tag}")
    await cli(site, "create-user", j.owner)
    await cli(site, "create-group", j.open_group, "--owner", j.owner, "--title", j.open_title,
              "--summary", "Where to sleep well.", "--join", "open")
    await cli(site, "create-group", j.approval_group, "--owner", j.owner, "--title",
              j.approval_title, "--privacy", "private", "--join", "approval",
              "--question", j.question)
    # A member on the second instance joins the open group before anything is written, so
    # the person's thread is delivered there.
    await cli(second_site, "create-user", j.remote)
    await cli(second_site, "follow", "--as", j.remote, f"@{j.open_group}@{site.domain}")

    async def joined() -> bool:
        rows = await second_site.instance.query(
            "SELECT f.state FROM follows f JOIN actors t ON t.id = f.target_id "
            "WHERE t.uri = :uri", uri=f"{site.base_url}/groups/{j.open_group}")
        return rows == [("accepted",)]

    await eventually(joined, what="the member on the second instance joined")
    yield j


async def signed_in(page: Page, j: Journey) -> None:
    await log_in(page, j.person)
    await expect(account_nav(page).get_by_role("link", name=j.person)).to_be_visible()


async def find_group(page: Page, title: str) -> None:
    """From the front page's directory: search, then open the group."""
    await page.goto("/")
    await page.get_by_role("searchbox", name="Search groups").fill(title)
    await page.get_by_role("button", name="Search").click()
    directory = page.locator("ul.directory")
    await expect(directory.get_by_role("listitem")).to_have_count(1)
    await expect(directory.get_by_role("link", name=title)).to_be_visible()
    await record(page, f"directory-search-{title.split()[0].lower()}")
    await directory.get_by_role("link", name=title).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(title)


def own_actions(article: Locator) -> Locator:
    """The actions of this post, not of the replies nested inside its article."""
    return article.locator(":scope > .post-actions")


async def article_of(page: Page, text: str) -> Locator:
    """The innermost <article> holding `text`."""
    article = page.locator("article", has=page.get_by_text(text, exact=True)).last
    await expect(article).to_be_visible(timeout=WAIT)
    return article


# -- 1. sign up, find and join an open group -----------------------------------------------


async def test_1_sign_up_find_and_join_an_open_group(page: Page, site: Site, journey: Journey
                                                     ) -> None:
    j = journey
    await sign_up(page, j.person)
    await signed_in(page, j)
    await record(page, "front-signed-in")

    await find_group(page, j.open_title)
    sidebar = page.get_by_role("complementary", name="About this group")
    await expect(sidebar).to_contain_text("Where to sleep well.")
    await expect(sidebar).to_contain_text("1 member")  # the member on the second instance
    await record(page, "open-group-before-joining")

    await sidebar.get_by_role("button", name=f"Join {j.open_title}").click()
    await expect(sidebar.get_by_role("button", name=f"Leave {j.open_title}")).to_be_visible()
    await expect(sidebar.get_by_role("link", name="New thread")).to_be_visible()
    await expect(sidebar).to_contain_text("2 members")
    await record(page, "open-group-joined")
    j.done.add("joined")


# -- 2. ask to join an approval group, answering its question --------------------------------


async def test_2_ask_to_join_answering_the_question_and_get_approved(
    page: Page, site: Site, journey: Journey
) -> None:
    j = journey
    j.needs("joined")
    await signed_in(page, j)
    await find_group(page, j.approval_title)
    sidebar = page.get_by_role("complementary", name="About this group")
    await expect(sidebar).to_contain_text("a moderator approves new members")
    await record(page, "approval-group")

    await sidebar.get_by_role("link", name="Ask to join").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Join {j.approval_title}")
    answer = "I read quietly and would like to talk about it."
    await page.get_by_label(j.question).fill(answer)
    await record(page, "join-form")
    await page.get_by_role("button", name="Ask to join").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Request sent")
    await expect(page.get_by_text("will read your request")).to_be_visible()
    await record(page, "join-requested")
    await page.goto(f"/groups/{j.approval_group}")
    await expect(page.get_by_text("Your request to join is waiting for an answer.")
                 ).to_be_visible()
    await record(page, "approval-group-pending")

    pending = await cli(site, "mod", "pending", j.approval_group)
    assert j.person in pending and answer in pending, pending  # the moderator reads it
    await cli(site, "mod", "approve", j.approval_group, j.person)

    await page.goto("/")
    unread = account_nav(page).get_by_role(
        "link", name=re.compile(r"^Notifications\s*, 1 unread$"))
    await expect(unread).to_be_visible()
    await expect(unread).to_contain_text("(1)")
    await record(page, "front-one-unread")
    await unread.click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Notifications")
    notice = page.locator("li.notification.unread")
    await expect(notice).to_have_count(1)
    await expect(notice).to_contain_text(
        f"Your request to join {j.approval_title} was approved: you are a member.")
    await record(page, "notification-join-approved")

    await notice.get_by_role("button", name=re.compile(r"^Mark read")).click()
    await expect(page.get_by_role("status")).to_have_text("No unread notifications")
    await expect(account_nav(page).get_by_role("link", name="Notifications", exact=True)
                 ).to_be_visible()
    await notice_link(page, j.approval_title).click()
    sidebar = page.get_by_role("complementary", name="About this group")
    await expect(sidebar.get_by_role("button", name=f"Leave {j.approval_title}")).to_be_visible()
    await record(page, "approval-group-member")
    j.done.add("approved")


def notice_link(page: Page, title: str) -> Locator:
    return page.locator("li.notification").get_by_role("link", name=title)


# -- 3. start a thread (Markdown, preview) and reply with JavaScript off ----------------------


async def test_3_start_a_thread_and_reply_without_javascript(
    page: Page, browser: Browser, site: Site, journey: Journey
) -> None:
    j = journey
    j.needs("joined")
    await signed_in(page, j)
    await page.goto(f"/groups/{j.open_group}")
    await page.get_by_role("link", name="New thread").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        f"New thread in {j.open_title}")
    j.thread_title = "Where does your cat sleep?"
    await page.get_by_label("Title").fill(j.thread_title)
    await page.get_by_label("Text").fill(
        "Mine sleeps **on the radiator**. See [the nap guide](https://example.org/naps).")
    await page.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("region", name="Preview")
    await expect(preview.locator("strong")).to_have_text("on the radiator")
    await expect(preview.get_by_role("link", name="the nap guide")).to_have_attribute(
        "href", "https://example.org/naps")
    await expect(page.get_by_label("Title")).to_have_value(j.thread_title)  # kept
    await record(page, "compose-preview")

    await page.get_by_role("button", name="Post", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(j.thread_title)
    j.thread_url = page.url
    root = page.locator("article.reply").first
    await expect(root.locator(".content strong")).to_have_text("on the radiator")
    await expect(root.get_by_role("link", name="the nap guide")).to_have_attribute(
        "href", "https://example.org/naps")
    await record(page, "thread")

    # The reply is written in a second browser profile with JavaScript off, while this page
    # (JavaScript on) keeps the thread open: it shows the reply without a reload. Pages
    # with scripts off get screenshots only (axe is a script); the same templates are
    # checked with axe in this page.
    context = await browser.new_context(base_url=site.base_url, java_script_enabled=False,
                                        viewport={"width": 390, "height": 844})
    try:
        nojs = await context.new_page()
        await signed_in(nojs, j)
        await nojs.goto(j.thread_url)
        await nojs.get_by_text("Reply to", exact=False).first.click()  # <details>, no script
        j.my_reply = "Mine prefers the *laundry basket*, warm from the dryer."
        box = nojs.get_by_label("Your reply")
        await box.fill(j.my_reply)
        await nojs.get_by_role("button", name="Preview").click()
        preview = nojs.get_by_role("region", name="Preview")
        await expect(preview.locator("em")).to_have_text("laundry basket")
        await expect(nojs.get_by_label("Your reply")).to_have_value(j.my_reply)
        await snap(nojs, "reply-preview-no-js")
        await nojs.get_by_role("button", name="Post reply").click()
        await expect(nojs.get_by_role("heading", level=1)).to_have_text(j.thread_title)
        # The reply's own page (its permalink), which links to the whole thread.
        await expect(nojs.locator("article.reply[aria-current=true] .content")
                     ).to_contain_text("laundry basket")
        await snap(nojs, "reply-page-no-js-phone")
        await nojs.get_by_role("link", name="the thread").click()
        nested = nojs.locator("article.reply details.replies article.reply")
        await expect(nested).to_have_count(1)
        await expect(nested.locator(".content")).to_contain_text("laundry basket")
        await snap(nojs, "thread-with-reply-no-js-phone")
    finally:
        await context.close()

    # Live, the reply goes under the post it answers, counted, with a loaded reply's actions.
    live = page.locator("article.reply details.replies article.reply", has_text="laundry basket")
    await expect(live).to_be_visible(timeout=LIVE_WAIT)
    await expect(page.get_by_role("status")).to_have_text(f"New post by {j.person}.")
    await expect(page.get_by_text("1 reply", exact=True)).to_be_visible()
    await expect(own_actions(live).get_by_role("link", name=f"Reply to {j.person}")
                 ).to_be_visible()
    await page.reload()
    nested = page.locator("article.reply details.replies article.reply")
    await expect(nested).to_have_count(1)
    await expect(nested.locator(".content em")).to_have_text("laundry basket")
    await expect(page.get_by_text("1 reply", exact=True)).to_be_visible()
    await record(page, "thread-with-reply")

    # A nested reply links to its reply page (only the thread's own post holds a form); that
    # form's preview, as the no-script browser saw it, checked with axe here.
    await own_actions(nested).get_by_role("link", name=f"Reply to {j.person}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Reply in {j.open_title}")
    await page.get_by_label("Your reply").fill("Only a **preview**.")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Reply in {j.open_title}")
    await expect(page.get_by_role("region", name="Preview").locator("strong")
                 ).to_have_text("preview")
    await record(page, "reply-preview")
    j.done.add("thread")


# -- 4. a reply from a member on the second instance appears live ----------------------------


async def test_4_a_reply_from_another_instance_appears_live(
    page: Page, site: Site, second_site: Site, journey: Journey
) -> None:
    j = journey
    j.needs("thread")
    await signed_in(page, j)
    await page.goto(j.thread_url)
    await expect(page.get_by_role("heading", level=1)).to_have_text(j.thread_title)
    await record(page, "thread-before-remote-reply")

    async def delivered() -> bool:
        return bool(await second_site.instance.query(
            "SELECT 1 FROM posts WHERE uri = :uri", uri=j.thread_url))

    await eventually(delivered, what="the thread delivered to the second instance")
    j.remote_reply = "Ours sleeps in the sink, of all places."
    await cli(second_site, "post", "--as", j.remote, "--group",
              f"@{j.open_group}@{site.domain}", "--reply-to", j.thread_url, j.remote_reply)

    # No reload: the open page's event stream brings it, under the thread's post, after
    # the person's own reply, with the actions a loaded reply has.
    arrived = page.locator("article.reply details.replies article.reply",
                           has=page.get_by_text(j.remote_reply))
    await expect(arrived).to_be_visible(timeout=LIVE_WAIT)
    await expect(page.get_by_text("2 replies", exact=True)).to_be_visible()
    await expect(own_actions(arrived).get_by_role("button", name=f"Like this post by {j.remote}")
                 ).to_be_visible()
    await expect(arrived.get_by_role("link", name=j.remote, exact=True)).to_be_visible()
    # A human date, the exact time on hover, as on the rest of the page.
    await expect(arrived.locator("time")).to_have_text("just now")
    await expect(arrived.locator("time")).to_have_attribute("title", re.compile(r"\d{4}"))
    await expect(page.get_by_role("status")).to_have_text(f"New post by {j.remote}.")
    await record(page, "thread-with-live-remote-reply")
    j.done.add("remote")


# -- 5. edit, like, report, delete ----------------------------------------------------------


async def test_5_edit_like_report_delete(page: Page, site: Site, journey: Journey) -> None:
    j = journey
    j.needs("remote")
    await signed_in(page, j)
    await page.goto(j.thread_url)
    root = page.locator("article.reply").first

    # Edit the thread's text: the edited marker shows.
    await own_actions(root).get_by_role("link", name="Edit your post").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Edit your post")
    await expect(page.get_by_label("Text")).to_have_value(re.compile(r"\*\*on the radiator\*\*"))
    await record(page, "edit")
    await page.get_by_label("Text").fill("Mine sleeps **on the radiator**, and in winter "
                                         "under the duvet.")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(j.thread_title)
    await expect(root.locator(":scope > .meta .marker", has_text="edited")).to_be_visible()
    await expect(root.locator(":scope > .content")).to_contain_text("under the duvet")
    await record(page, "thread-edited")

    # Like the other member's reply: the count shows, the button says it is pressed.
    theirs = await article_of(page, j.remote_reply)
    await own_actions(theirs).get_by_role("button", name=f"Like this post by {j.remote}").click()
    theirs = await article_of(page, j.remote_reply)
    await expect(theirs.locator(":scope > .meta")).to_contain_text("1 like")
    unlike = own_actions(theirs).get_by_role("button", name=f"Unlike this post by {j.remote}")
    await expect(unlike).to_have_attribute("aria-pressed", "true")
    await record(page, "thread-liked")

    # Report it: the moderators' list on the CLI has it.
    await own_actions(theirs).get_by_role("link", name=f"Report this post by {j.remote}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Report a post")
    j.reported = "Off topic: this group is about naps, not plumbing."
    await page.get_by_label("What is wrong with it").fill(j.reported)
    await record(page, "report-form")
    await page.get_by_role("button", name="Send report").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Report sent")
    await record(page, "report-sent")
    reports = await cli(site, "admin", "reports", "--group", j.open_group)
    assert j.reported in reports and j.person in reports, reports

    # Delete my reply: a place-holder stays, its text is gone.
    await page.goto(j.thread_url)
    mine = await article_of(page, "Mine prefers the laundry basket, warm from the dryer.")
    await own_actions(mine).get_by_role("link", name="Delete your post").click()
    await expect(page.get_by_role("heading", level=2, name="Delete this post")).to_be_visible()
    await page.get_by_label("Yes, delete this post").check()
    await page.get_by_role("button", name="Delete", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Deleted")
    await record(page, "deleted")
    await page.goto(j.thread_url)
    await expect(page.get_by_text(j.remote_reply)).to_be_visible()
    await expect(page.get_by_text("Deleted by its author")).to_be_visible()
    assert "laundry basket" not in await page.content()
    await record(page, "thread-after-delete")
    j.done.add("edited")


# -- 6. a members-only post, then leave: it is gone from every page ---------------------------


async def test_6_leave_and_the_members_only_post_is_gone(page: Page, site: Site,
                                                         journey: Journey) -> None:
    j = journey
    j.needs("approved")
    j.secret = "The spare key is under the third flowerpot."
    title = f"Members notice {unique('n')}"
    url = (await cli(site, "post", "--as", j.owner, "--group", j.approval_group, "--title",
                     title, "--visibility", "members", j.secret)).strip()
    await signed_in(page, j)
    feed = page.get_by_role("region", name="Your groups")
    await feed.get_by_role("link", name=title).click()  # from the home feed
    await expect(page).to_have_url(url)
    await expect(page.get_by_role("heading", level=1)).to_have_text(title)
    await expect(page.get_by_text(j.secret)).to_be_visible()
    await expect(page.locator(".marker", has_text="members").first).to_be_visible()
    await record(page, "members-only-post")

    await page.get_by_role("link", name=j.approval_title).first.click()
    sidebar = page.get_by_role("complementary", name="About this group")
    await sidebar.get_by_role("button", name=f"Leave {j.approval_title}").click()
    await expect(sidebar.get_by_role("link", name="Ask to join")).to_be_visible()
    await record(page, "approval-group-left")

    response = await page.goto(url)
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    await expect(page.get_by_role("alert")).to_be_visible()
    await record(page, "members-only-post-404")

    post_id = await site.instance.query("SELECT id FROM posts WHERE uri = :uri", uri=url)
    pages = ["/", "/home", f"/groups/{j.approval_group}", f"/users/{j.owner}",
             f"/users/{j.person}", "/notifications", f"/posts/{post_id[0][0]}/fragment",
             f"/posts/{post_id[0][0]}/reply", f"/groups/{j.approval_group}/feed.rss"]
    for path in pages:
        await page.goto(path)
        shown = await page.content()
        assert j.secret not in shown and title not in shown, path
    j.done.add("left")


# -- 7. log out -------------------------------------------------------------------------------


async def test_7_log_out(page: Page, site: Site, journey: Journey) -> None:
    j = journey
    await signed_in(page, j)
    await page.goto("/settings")
    await page.get_by_role("button", name="Log out", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("You are logged out.")
    nav = account_nav(page)
    await expect(nav.get_by_role("link", name="Log in")).to_be_visible()
    await expect(nav.get_by_role("link", name=j.person)).to_have_count(0)
    await record(page, "logged-out")
    await page.goto(j.thread_url or f"/groups/{j.open_group}")
    await expect(page.get_by_role("button", name=re.compile("^(Like|Join)"))).to_have_count(0)
    await expect(page.get_by_role("link", name="Log in").first).to_be_visible()
