"""A group's moderator runs it from the browser (issue 9, "Tests that must exist"): approves
a join request reading its answer, clears the held-post queue, resolves a member's report by
removing the post, bans a member who lives on a second fedi instance (their server gets the
Block, their next post is not taken), locks and pins a thread from its page; every action is
in the group's moderation log and in the audit log under the moderator.

Set-up a newcomer could not do in the browser is done with the CLI: the group (owned by the
moderator, who signed up on the page), the member on the second instance and what they post,
the moderator's threads to lock and pin. The tests run in order and share `Crew`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

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
class Crew:
    moderator: str
    member: str
    remote: str
    group: str
    title: str
    question: str = "What do you grow?"
    remote_post: str = ""
    done: set[str] = field(default_factory=set)

    def needs(self, step: str) -> None:
        assert step in self.done, f"this step builds on {step!r}, which did not pass"


async def cli(site: Site, *args: str, check: bool = True) -> tuple[int, str]:
    result = await asyncio.to_thread(site.instance.cli, *args, check=check)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(autouse=True, scope="module")
def patient_expectations() -> Iterator[None]:
    expect.set_options(timeout=WAIT)
    yield
    expect.set_options(timeout=None)


async def follow_state(on: Site, follower: str, group: str) -> list[tuple[str]]:
    return await on.instance.query(
        "SELECT f.state FROM follows f JOIN actors a ON a.id = f.follower_id "
        "JOIN actors g ON g.id = f.target_id WHERE a.uri = :who AND g.uri = :group",
        who=follower, group=group)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def crew(browser: Browser, site: Site, second_site: Site) -> AsyncIterator[Crew]:
    tag = unique("g")
    c = Crew(moderator=unique("mona"), member=unique("mel"), remote=unique("rita"),
             group=unique("garden"), title=f"Garden {tag}")
    context, page = await open_page(browser, site)
    try:
        for name in (c.moderator, c.member):
            await sign_up(page, name)
    finally:
        await context.close()
    await cli(site, "create-group", c.group, "--owner", c.moderator, "--title", c.title,
              "--join", "approval", "--question", c.question)
    # A person on the second instance asks to join (no answers: fedi's Follow carries none).
    await cli(second_site, "create-user", c.remote)
    await cli(second_site, "follow", "--as", c.remote, f"@{c.group}@{site.domain}")

    async def asked() -> bool:
        return await follow_state(site, remote_uri(second_site, c), group_uri(site, c)) == [
            ("pending",)]

    await eventually(asked, what="the second instance's join request arrived")
    yield c


def group_uri(site: Site, c: Crew) -> str:
    return f"{site.base_url}/groups/{c.group}"


def remote_uri(second_site: Site, c: Crew) -> str:
    return f"{second_site.base_url}/users/{c.remote}"


def local_uri(site: Site, name: str) -> str:
    return f"{site.base_url}/users/{name}"


async def signed_in(page: Page, name: str) -> None:
    await page.context.clear_cookies()
    await log_in(page, name)
    await expect(account_nav(page).get_by_role("link", name=name)).to_be_visible()


async def open_dashboard(page: Page, c: Crew) -> None:
    """From the group's page, as the moderator finds it."""
    await page.goto(f"/groups/{c.group}")
    sidebar = page.get_by_role("complementary", name="About this group")
    await sidebar.get_by_role("link", name=f"Moderate {c.title}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Moderate {c.title}")


async def fits_a_phone(page: Page, name: str) -> None:
    """At 390 px the page scrolls down only: long addresses wrap, forms fit."""
    await page.set_viewport_size({"width": 390, "height": 844})
    try:
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        await record(page, name)
        assert width <= 390, f"{page.url} is {width} px wide on a 390 px phone"
    finally:
        await page.set_viewport_size({"width": 1280, "height": 800})


# -- 1. a join request and its answer --------------------------------------------------------


async def test_1_approve_join_requests_reading_the_answer(
    page: Page, site: Site, second_site: Site, crew: Crew
) -> None:
    c = crew
    await signed_in(page, c.member)
    await page.goto(f"/groups/{c.group}")
    sidebar = page.get_by_role("complementary", name="About this group")
    await sidebar.get_by_role("link", name="Ask to join").click()
    answer = "Tomatoes on the balcony, badly."
    await page.get_by_label(c.question).fill(answer)
    await page.get_by_role("button", name="Ask to join").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Request sent")

    await signed_in(page, c.moderator)
    await open_dashboard(page, c)
    requests = page.get_by_role("region", name="Join requests (2)")
    mine = requests.locator("article.mod-item", has_text=c.member)
    await expect(mine.locator("pre.answers")).to_contain_text(answer)
    await expect(mine.locator("pre.answers")).to_contain_text(c.question)
    await record(page, "dashboard-two-requests")
    await mine.get_by_role("button", name=f"Approve {c.member}").click()
    await expect(page.get_by_role("region", name="Join requests (1)")).to_be_visible()
    await page.get_by_role("button", name=f"Approve {c.remote}").click()
    await expect(page.get_by_role("region", name="Join requests (0)")).to_contain_text(
        "No one is waiting.")
    members = page.get_by_role("region", name="Members (3)")
    await expect(members.get_by_role("link", name=c.member)).to_be_visible()
    await expect(members.get_by_role("link", name=c.remote)).to_be_visible()
    await record(page, "dashboard-approved")

    async def accepted_there() -> bool:
        return await follow_state(second_site, remote_uri(second_site, c),
                                  group_uri(site, c)) == [("accepted",)]

    await eventually(accepted_there, what="the second instance got the Accept")
    c.done.add("members")


# -- 2. the held-post queue -------------------------------------------------------------------


async def set_premoderation(page: Page, c: Crew, on: bool) -> None:
    await open_dashboard(page, c)
    settings = page.get_by_role("region", name="Settings")
    box = settings.get_by_label("Premoderation: members' new posts wait for a moderator")
    await (box.check() if on else box.uncheck())
    await settings.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Moderate {c.title}")
    await expect(page.get_by_label("Premoderation: members' new posts wait for a moderator")
                 ).to_be_checked(checked=on)


async def test_2_clear_the_held_post_queue(page: Page, site: Site, crew: Crew) -> None:
    c = crew
    c.needs("members")
    await signed_in(page, c.moderator)
    await set_premoderation(page, c, True)

    await signed_in(page, c.member)
    await page.goto(f"/groups/{c.group}/new")
    title = "Seedlings are leggy"
    await page.get_by_label("Title").fill(title)
    await page.get_by_label("Text").fill("They lean towards the window. More light?")
    await page.get_by_role("button", name="Post", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Waiting for a moderator")
    await page.goto(f"/groups/{c.group}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(c.title)
    # Its author sees it marked as waiting; no one else sees it yet.
    mine = page.locator("article.entry", has=page.get_by_role("link", name=title))
    await expect(mine.locator(".marker", has_text="waiting for a moderator")).to_be_visible()
    await record(page, "group-own-held-post")
    await page.context.clear_cookies()
    await page.goto(f"/groups/{c.group}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(c.title)
    await expect(page.get_by_role("link", name=title)).to_have_count(0)

    await signed_in(page, c.moderator)
    await open_dashboard(page, c)
    held = page.get_by_role("region", name="Held posts (1)")
    await expect(held).to_contain_text("held for premoderation")
    await expect(held).to_contain_text("They lean towards the window.")
    await record(page, "dashboard-held")
    await held.get_by_role("button", name=f"Approve the post by {c.member}").click()
    await expect(page.get_by_role("region", name="Held posts (0)")).to_contain_text(
        "Nothing is held.")
    await set_premoderation(page, c, False)

    await page.goto(f"/groups/{c.group}")
    await expect(page.get_by_role("link", name=title)).to_be_visible()
    await record(page, "group-with-approved-post")
    c.done.add("held")


# -- 3. a member's report, resolved by removing the post ---------------------------------------


async def test_3_resolve_a_report_by_removing_the_post(
    page: Page, site: Site, second_site: Site, crew: Crew
) -> None:
    c = crew
    c.needs("members")
    c.remote_post = "Buy cheap seeds at the link in my profile!"
    _, out = await cli(second_site, "post", "--as", c.remote, "--group",
                       f"@{c.group}@{site.domain}", "--title", "Seeds sale", c.remote_post)
    uri = out.strip().splitlines()[0]

    async def arrived() -> bool:
        return bool(await site.instance.query("SELECT 1 FROM posts WHERE uri = :uri",
                                              uri=uri))

    await eventually(arrived, what="the remote member's post reached the group")

    await signed_in(page, c.member)
    await page.goto(f"/groups/{c.group}")
    await page.get_by_role("link", name="Seeds sale").click()
    article = page.locator("article", has=page.get_by_text(c.remote_post)).last
    await article.get_by_role("link", name=f"Report this post by {c.remote}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Report a post")
    complaint = "Spam: selling, nothing to do with gardening."
    await page.get_by_label("What is wrong with it").fill(complaint)
    await page.get_by_role("button", name="Send report").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Report sent")

    await signed_in(page, c.moderator)
    await open_dashboard(page, c)
    reports = page.get_by_role("region", name="Open reports (1)")
    await expect(reports).to_contain_text(complaint)
    await expect(reports.locator("blockquote", has_text=c.remote_post)).to_be_visible()
    await record(page, "dashboard-report")
    await fits_a_phone(page, "dashboard-report-phone")
    await reports.get_by_label("Action").select_option("remove")
    await reports.get_by_label("Note (moderators only)").fill("Spam, removed.")
    await reports.get_by_role("button", name="Resolve report").click()
    await expect(page.get_by_role("region", name="Open reports (0)")).to_contain_text(
        "No open reports.")
    removed = page.get_by_role("region", name="Posts")
    await expect(removed.get_by_role("link", name="Seeds sale")).to_be_visible()
    await record(page, "dashboard-report-resolved")

    rows = await site.instance.query("SELECT deleted_at FROM posts WHERE uri = :uri", uri=uri)
    assert rows and rows[0][0] is not None, rows
    await page.goto(f"/groups/{c.group}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(c.title)
    await expect(page.get_by_role("link", name="Seeds sale")).to_have_count(0)
    c.done.add("report")


# -- 4. ban a member who lives on the second instance ---------------------------------------


async def test_4_ban_a_member_from_another_instance(
    page: Page, site: Site, second_site: Site, crew: Crew
) -> None:
    c = crew
    c.needs("members")
    await signed_in(page, c.moderator)
    await open_dashboard(page, c)
    bans = page.get_by_role("region", name="Members (3)")
    await bans.get_by_label("Who (a user name, @name@host or an actor's address)").fill(
        f"@{c.remote}@{second_site.domain}")
    await bans.get_by_label("Reason (sent to their server and shown in the log)").fill(
        "Spam after a warning.")
    await bans.get_by_role("button", name="Ban", exact=True).click()
    members = page.get_by_role("region", name="Members (2)")
    await expect(members.get_by_role("button", name=f"Unban {c.remote}")).to_be_visible()
    await expect(members.locator("ul.mod-members").get_by_role("link", name=c.remote)
                 ).to_have_count(0)
    await record(page, "dashboard-banned")

    # Their server got the Block: the membership is over there too.
    async def ended_there() -> bool:
        return await follow_state(second_site, remote_uri(second_site, c),
                                  group_uri(site, c)) == []

    await eventually(ended_there, what="the second instance ended the banned membership")

    # Their next post is not taken by the group: nothing of it is stored here.
    code, out = await cli(second_site, "post", "--as", c.remote, "--group",
                          f"@{c.group}@{site.domain}", "--title", "Back again",
                          "Still selling seeds.", check=False)
    assert code != 0, out
    assert "member" in out, out
    await asyncio.sleep(2)  # anything sent regardless would have arrived by now
    stored = await site.instance.query(
        "SELECT p.uri FROM posts p JOIN actors a ON a.id = p.author_id WHERE a.uri = :who",
        who=remote_uri(second_site, c))
    assert len(stored) == 1, stored  # only the removed one from before the ban
    c.done.add("ban")


# -- 5. lock and pin a thread from its page ---------------------------------------------------


async def test_5_lock_and_pin_a_thread_from_its_page(page: Page, site: Site, crew: Crew
                                                    ) -> None:
    c = crew
    c.needs("members")
    _, older = await cli(site, "post", "--as", c.moderator, "--group", c.group, "--title",
                         "Garden rules", "Be kind to slugs and people.")
    await cli(site, "post", "--as", c.moderator, "--group", c.group, "--title",
              "Spring swap meet", "Bring cuttings.")
    older_url = older.strip().splitlines()[0]

    await signed_in(page, c.moderator)
    await page.goto(older_url)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Garden rules")
    root = page.locator("article.reply").first
    tools = root.locator(":scope > .post-actions details.mod-actions")
    await tools.locator("summary").click()
    await record(page, "thread-moderator-tools")
    await tools.get_by_role("button", name="Lock thread").click()
    await expect(page.get_by_text("locked: no new replies")).to_be_visible()
    tools = page.locator("article.reply").first.locator(
        ":scope > .post-actions details.mod-actions")
    await tools.locator("summary").click()
    await tools.get_by_role("button", name="Pin thread").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Garden rules")
    await tools.locator("summary").click()
    await expect(page.get_by_role("button", name="Unpin thread")).to_be_visible()
    await expect(page.get_by_role("button", name="Unlock thread")).to_be_visible()
    await record(page, "thread-locked-pinned")

    await page.goto(f"/groups/{c.group}")
    first = page.locator("article.entry").first
    await expect(first.get_by_role("link", name="Garden rules")).to_be_visible()
    await expect(first.locator(".marker", has_text="pinned")).to_be_visible()
    await record(page, "group-pinned-first")

    await signed_in(page, c.member)
    await page.goto(older_url)
    await expect(page.get_by_text("locked: no new replies")).to_be_visible()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Garden rules")
    await expect(page.get_by_role("button", name="Like this post", exact=False).first
                 ).to_be_visible()  # the member's actions are there ...
    await expect(page.get_by_label("Your reply")).to_have_count(0)  # ... but no Reply
    await expect(page.locator("details.reply-box")).to_have_count(0)
    await record(page, "thread-locked-member")
    c.done.add("lock")


# -- 6. the moderation log and the audit log --------------------------------------------------


async def test_6_every_action_is_logged_under_the_moderator(
    page: Page, site: Site, crew: Crew
) -> None:
    c = crew
    for step in ("members", "held", "report", "ban", "lock"):
        c.needs(step)
    await signed_in(page, c.moderator)
    await page.goto(f"/groups/{c.group}/modlog")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Moderation log of {c.title}")
    table = page.locator("table.modlog")
    expected = ["approve", "approve-post", "settings", "remove", "ban", "lock", "pin"]
    for action in expected:
        row = table.locator("tr", has=page.get_by_role("cell", name=action, exact=True))
        await expect(row.first).to_be_visible()
        await expect(row.first.get_by_role("link", name=c.moderator)).to_be_visible()
    await record(page, "modlog")
    await fits_a_phone(page, "modlog-phone")

    _, audit = await cli(site, "admin", "audit", "--group", c.group)
    moderator = local_uri(site, c.moderator)
    done = {(line.split("\t")[1], line.split("\t")[2]) for line in audit.splitlines()
            if line.count("\t") >= 2}
    for action in expected:
        assert (moderator, f"group.{action}") in done, (action, audit)
    assert not any(who == "admin (cli)" for who, _ in done), audit
