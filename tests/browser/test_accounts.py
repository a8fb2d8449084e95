"""A person's account in real Chromium against a real `fedi serve`: sign up, log in, settings,
log out, a wrong password, a forged form. Each page is screenshotted and checked with axe."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import (
    Site,
    account_nav,
    log_in,
    record,
    sign_up,
    unique,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_sign_up_log_in_change_display_name_log_out(page: Page, site: Site) -> None:
    name = unique("ann")
    await page.goto("/")
    await expect(account_nav(page)).to_contain_text("Sign up")
    await record(page, "front-anonymous")

    await page.goto("/signup")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign up")
    await record(page, "signup")
    await sign_up(page, name)
    await expect(page.get_by_role("status")).to_have_text("Log in to continue.")
    await record(page, "login-after-signup")

    await log_in(page, name)
    await expect(page).to_have_url(f"{site.base_url}/")
    nav = account_nav(page)
    await expect(nav.get_by_role("link", name=name)).to_be_visible()
    await record(page, "front-signed-in")

    await nav.get_by_role("link", name=name).click()
    await expect(page).to_have_url(f"{site.base_url}/settings")
    await expect(page.get_by_text(f"@{name}@{site.domain}")).to_be_visible()
    await record(page, "settings")

    await page.get_by_label("Display name").fill("Ann Example")
    await page.get_by_role("button", name="Save profile").click()
    await expect(page).to_have_url(re.compile(r"/settings\?m=saved$"))
    await expect(page.get_by_label("Display name")).to_have_value("Ann Example")
    await record(page, "settings-saved")
    # The public page shows the new name.
    await page.goto(f"/users/{name}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Ann Example")
    await record(page, "profile")

    await page.goto("/settings")
    await page.get_by_role("button", name="Log out", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/login\?m=loggedout$"))
    await expect(page.get_by_role("status")).to_have_text("You are logged out.")
    await expect(account_nav(page)).to_contain_text("Log in")
    await record(page, "logged-out")
    # The session is over: settings ask for a login again.
    await page.goto("/settings")
    await expect(page).to_have_url(re.compile(r"/login\?next=/settings&m=login$"))

    await log_in(page, name)
    await expect(page).to_have_url(f"{site.base_url}/settings")  # back where it was going
    await expect(account_nav(page).get_by_role("link", name=name)).to_be_visible()
    await expect(page.get_by_label("Display name")).to_have_value("Ann Example")


async def test_a_wrong_password_is_refused_on_the_page(page: Page, site: Site) -> None:
    name = unique("bob")
    await sign_up(page, name)
    await log_in(page, name, "not the password at all")
    await expect(page.get_by_role("alert")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text(re.compile("password", re.I))
    await expect(page.get_by_label("User name", exact=True)).to_have_value(name)  # kept
    await expect(account_nav(page)).to_contain_text("Log in")
    await record(page, "login-wrong-password")
    await page.goto("/settings")
    await expect(page).to_have_url(re.compile(r"/login\?"))

    # The right password still works after a wrong one.
    await log_in(page, name)
    await expect(account_nav(page).get_by_role("link", name=name)).to_be_visible()


async def test_a_forged_csrf_token_is_refused_and_changes_nothing(page: Page, site: Site
                                                                  ) -> None:
    name = unique("cat")
    await sign_up(page, name)
    await log_in(page, name)
    await page.goto("/settings")
    form = page.locator("form[action='/settings/profile']")
    # Evaluated through the DevTools protocol: the page's CSP does not apply to it.
    await form.locator("input[name=csrf]").evaluate(
        "input => { input.value = 'forged' + input.value }")
    await page.get_by_label("Display name").fill("Mallory")
    await page.get_by_role("button", name="Save profile").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Form refused")
    await expect(page.get_by_role("alert")).to_contain_text("Nothing was changed")
    await expect(page.get_by_role("alert")).to_contain_text("does not match your session")
    await record(page, "csrf-refused")

    await page.goto("/settings")
    await expect(page.get_by_label("Display name")).to_have_value("")
    await page.goto(f"/users/{name}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    # Still signed in: a refused form ends nothing.
    await expect(account_nav(page).get_by_role("link", name=name)).to_be_visible()
