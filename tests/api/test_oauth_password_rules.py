"""The password grant keeps the login form's rules (two-factor, approval, suspension), a new
password revokes app tokens, and the admin's switch for the grant on /admin and in the CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from fedi.accounts import registration, suspension, totp
from fedi.store.models import Account, Actor
from tests.accounts.support import PASSWORD, browser, post_form, sign_up, token_in
from tests.api.oauth_flow import code_for, exchange, person, register
from tests.api.support import api_app, client
from tests.support.app import InProcess
from tests.test_cli import env, ready, run
from tests.web.admin_support import audited, signed_up_admin, uri_of

__all__ = ["env", "ready"]  # fixtures


async def _password_token(fedi: InProcess, app: dict[str, str], name: str,
                          password: str = PASSWORD) -> dict[str, str]:
    answer = await fedi.http.post("/oauth/token", data={
        "grant_type": "password", "client_id": app["client_id"],
        "client_secret": app["client_secret"], "username": name, "password": password})
    body: dict[str, str] = answer.json()
    return body


async def test_two_factor_approval_and_suspension_refuse_the_password_grant(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        app = await register(fedi.http)
        async with person(fedi, "ann"), person(fedi, "sue"):
            pass
        async with fedi.services.sessionmaker() as session, session.begin():
            ann = await session.get(Account, await actor_id(fedi, "ann"))
            assert ann is not None
            ann.totp_secret = totp.new_secret()
        refused = await _password_token(fedi, app, "ann")
        assert refused["error"] == "invalid_grant"
        assert "two-factor" in refused["error_description"]
        async with fedi.services.sessionmaker() as session, session.begin():
            await registration.set_mode(session, "approval")
        async with browser(fedi) as http:
            await sign_up(http, "pat", reason="I garden")
        waiting = await _password_token(fedi, app, "pat")
        assert "approval" in waiting["error_description"]
        sues = (await _password_token(fedi, app, "sue"))["access_token"]
        async with fedi.services.sessionmaker() as session, session.begin():
            await suspension.suspend(session, await actor_id(fedi, "sue"), who="admin",
                                     reason="spam")
        suspended = await _password_token(fedi, app, "sue")
        assert suspended["error"] == "invalid_grant"
        assert "suspended" in suspended["error_description"]
        # The token she had before is refused too.
        async with client(fedi, sues) as api:
            assert (await api.get("/api/v1/accounts/verify_credentials")).status_code == 401


async def actor_id(fedi: InProcess, name: str) -> int:
    async with fedi.services.sessionmaker() as session:
        return (await session.execute(select(Actor.id).where(
            Actor.username == name, Actor.local.is_(True)))).scalar_one()


async def test_changing_the_password_revokes_the_apps_tokens(database_url: str) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        raw = (await exchange(fedi.http, app, await code_for(alice, app))).json()["access_token"]
        settings = await alice.get("/settings")
        changed = await alice.post("/settings/password", data={
            "csrf": token_in(settings), "current": PASSWORD, "new": "another long password"})
        assert changed.status_code == 303
        async with client(fedi, raw) as api:
            assert (await api.get("/api/v1/accounts/verify_credentials")).status_code == 401
        # The browser that changed it stays signed in.
        assert (await alice.get("/settings/apps")).status_code == 200


async def test_the_admin_turns_the_password_grant_off_on_the_admin_page(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi, browser(fedi) as http:
        admin = await signed_up_admin(fedi, http)
        app = await register(fedi.http)
        page = await http.get("/admin")
        assert 'action="/admin/apps/password-grant"' in page.text
        done = await post_form(http, "/admin", "/admin/apps/password-grant",
                               password_grant="off")
        assert done.status_code == 200 and "password grant is off" in done.text
        refused = await _password_token(fedi, app, "root")
        assert refused["error"] == "unsupported_grant_type"
        entries = await audited(fedi, "api-password-grant")
        assert [(e.who, e.target) for e in entries] == [(admin, "off")]
        bad = await post_form(http, "/admin", "/admin/apps/password-grant",
                              password_grant="maybe")
        assert bad.status_code == 400 and "on or off" in bad.text
        await post_form(http, "/admin", "/admin/apps/password-grant", password_grant="on")
        assert (await _password_token(fedi, app, "root")).get("access_token")
        assert await uri_of(fedi, "root") == admin


def test_the_password_grant_switch_from_the_cli(
    ready: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(capsys, "admin", "password-grant")[1].strip() == "password grant: on"
    assert run(capsys, "create-user", "root", "--admin")[0] == 0
    code, out, _ = run(capsys, "admin", "--as", "root", "password-grant", "off")
    assert code == 0 and out.strip() == "password grant: off"
    assert run(capsys, "admin", "password-grant")[1].strip() == "password grant: off"
    audit = run(capsys, "admin", "audit")[1]
    assert "http://fedi.test/users/root\tapi-password-grant" in audit
