"""Sign-up, log in and out, sessions and CSRF through the real app (in process)."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.responses import Response

from fedi.accounts import registration
from fedi.config import Settings
from fedi.store.models import Account, Actor, SignupInvite, User, WebSession
from fedi.web.auth import set_cookie
from tests.accounts.support import (
    PASSWORD,
    app,
    browser,
    log_in,
    post_form,
    session_cookie,
    sign_up,
    token_in,
)
from tests.support.app import BASE_URL, InProcess


async def _count(fedi: InProcess, model: type, *where: object) -> int:
    async with fedi.services.sessionmaker() as session:
        return int((await session.execute(
            select(func.count()).select_from(model).where(*where))).scalar_one())


async def test_open_signup_makes_a_local_person_and_logs_in(database_url: str) -> None:
    async with app(database_url, "open") as fedi:
        page = await sign_up(fedi.http, "ann", email="ann@example.org")
        assert page.status_code == 303
        async with fedi.services.sessionmaker() as session:
            actor = (await session.execute(select(Actor).where(Actor.username == "ann"))
                     ).scalar_one()
            assert actor.local and actor.type == "Person" and actor.private_key_pem
            assert await session.get(User, actor.id) is not None
            account = await session.get(Account, actor.id)
            assert account is not None and account.email == "ann@example.org"
        # The actor document is served like any create-user's.
        doc = await fedi.http.get(f"{BASE_URL}/users/ann",
                                  headers={"Accept": "application/activity+json"})
        assert doc.status_code == 200 and doc.json()["type"] == "Person"
        assert (await log_in(fedi.http, "ann")).status_code == 303
        settings = await fedi.http.get("/settings")
        assert settings.status_code == 200 and "@ann@" in settings.text


async def test_signup_refuses_bad_input_and_changes_nothing(database_url: str) -> None:
    async with app(database_url, "open") as fedi:
        assert (await sign_up(fedi.http, "bob")).status_code == 303
        cases = {
            "bob": ("already taken", PASSWORD),
            "Bad Name": ("not a valid name", PASSWORD),
            "carol": ("too short", "short"),
            "davidsonjr": ("must not be the user name", "DavidsonJr"),
            "erin": ("too long", "x" * 1025),
            "frankfrank1": ("must not be the user name", "frankfrank1"),
        }
        for name, (why, password) in cases.items():
            page = await sign_up(fedi.http, name, password)
            assert page.status_code == 400, name
            assert why in page.text, (name, page.text)
        assert await _count(fedi, Actor, Actor.type == "Person") == 1


async def test_closed_signup_is_refused(database_url: str) -> None:
    async with app(database_url, "closed") as fedi:
        assert "Sign-up is closed" in (await fedi.http.get("/signup")).text
        page = await post_form(fedi.http, "/login", "/signup", username="ann",
                               password=PASSWORD)
        assert page.status_code == 400 and "sign-up is closed" in page.text
        assert await _count(fedi, Account) == 0


async def test_approval_signup_waits_for_an_admin(database_url: str) -> None:
    async with app(database_url, "approval") as fedi:
        no_reason = await sign_up(fedi.http, "ann")
        assert no_reason.status_code == 400 and "say why you want to join" in no_reason.text
        assert (await sign_up(fedi.http, "ann", reason="I knit")).status_code == 303
        refused = await log_in(fedi.http, "ann")
        assert refused.status_code == 400 and "waiting for an admin" in refused.text
        assert session_cookie(fedi.http) is None
        async with fedi.services.sessionmaker() as session, session.begin():
            [(actor, account)] = await registration.pending(session)
            assert actor.username == "ann"
            assert account.approval_reason == "I knit"
            await registration.approve(session, "ann")
        assert (await log_in(fedi.http, "ann")).status_code == 303
        assert session_cookie(fedi.http)


async def test_invite_signup_needs_a_valid_code(database_url: str) -> None:
    async with app(database_url, "invite") as fedi:
        async with fedi.services.sessionmaker() as session, session.begin():
            code = await registration.create_invite(session, max_uses=1, expires_in_days=1)
            expired = await registration.create_invite(session, None, 1)
        page = await sign_up(fedi.http, "ann")
        assert page.status_code == 400 and "needs an invite" in page.text
        page = await sign_up(fedi.http, "ann", invite="forged")
        assert page.status_code == 400 and "not valid" in page.text
        assert (await sign_up(fedi.http, "ann", invite=code)).status_code == 303
        used_up = await sign_up(fedi.http, "bob", invite=code)
        assert used_up.status_code == 400 and "used up" in used_up.text
        async with fedi.services.sessionmaker() as session, session.begin():
            for invite in (await session.execute(select(SignupInvite))).scalars():
                invite.expires_at = 1.0
        late = await sign_up(fedi.http, "carol", invite=expired)
        assert late.status_code == 400 and "expired" in late.text
        assert await _count(fedi, Account) == 1


async def test_logout_ends_the_session_server_side(database_url: str) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        await log_in(fedi.http, "ann")
        stolen = session_cookie(fedi.http)
        assert stolen
        out = await post_form(fedi.http, "/settings", "/logout")
        assert out.status_code == 303 and session_cookie(fedi.http) is None
        # Replaying the old cookie gets the login page, not the settings.
        async with browser(fedi) as thief:
            thief.cookies.set("fedi_session", stolen, domain="fedi.test")
            replay = await thief.get("/settings")
        assert replay.status_code == 303
        assert replay.headers["location"].startswith("/login?next=/settings&m=expired")
        assert await _count(fedi, WebSession) == 0


async def test_log_out_everywhere_revokes_every_session(database_url: str) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        async with browser(fedi) as phone:
            await log_in(phone, "ann")
            await log_in(fedi.http, "ann")
            assert (await phone.get("/settings")).status_code == 200
            listed = await fedi.http.get("/settings")
            assert listed.text.count("<li>") == 2
            done = await post_form(fedi.http, "/settings", "/settings/logout-everywhere")
            assert done.status_code == 303
            assert (await phone.get("/settings")).status_code == 303
            assert (await fedi.http.get("/settings")).status_code == 303
            assert await _count(fedi, WebSession) == 0


async def test_forged_or_missing_csrf_token_is_refused_and_changes_nothing(
    database_url: str,
) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        await log_in(fedi.http, "ann")
        page = await fedi.http.get("/settings")
        good = token_in(page)
        for fields in ({"csrf": "0" * 64}, {}, {"csrf": ""}):
            refused = await fedi.http.post("/settings/profile",
                                           data={**fields, "display_name": "Mallory"})
            assert refused.status_code == 403
            assert "Nothing was changed" in refused.text
        # A token from another browser's session does not work in this one.
        async with browser(fedi) as other:
            await log_in(other, "ann")
            theirs = token_in(await other.get("/settings"))
        assert theirs != good
        refused = await fedi.http.post("/settings/profile",
                                       data={"csrf": theirs, "display_name": "Mallory"})
        assert refused.status_code == 403
        # Right token, but the browser says another site sent the form.
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            refused = await fedi.http.post("/settings/profile", headers=headers,
                                           data={"csrf": good, "display_name": "Mallory"})
            assert refused.status_code == 403 and "another site" in refused.text
        async with fedi.services.sessionmaker() as session:
            actor = (await session.execute(select(Actor).where(Actor.username == "ann"))
                     ).scalar_one()
            assert actor.name is None
        # And with everything right it works.
        saved = await fedi.http.post("/settings/profile", headers={"Origin": BASE_URL},
                                     data={"csrf": good, "display_name": "Ann"})
        assert saved.status_code == 303


async def test_login_form_needs_the_browsers_own_token(database_url: str) -> None:
    """Login CSRF: a form posted from elsewhere cannot log a browser into someone's account."""
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        fedi.http.cookies.clear()
        forged = await fedi.http.post("/login", data={
            "csrf": "a" * 64, "username": "ann", "password": PASSWORD})
        assert forged.status_code == 403 and session_cookie(fedi.http) is None


async def test_session_fixation_a_pre_login_cookie_is_never_the_session(
    database_url: str,
) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        fedi.http.cookies.clear()
        # An attacker plants cookies before the victim logs in.
        fedi.http.cookies.set("fedi_session", "planted-by-attacker", domain="fedi.test")
        page = await fedi.http.get("/login")
        pre = fedi.http.cookies.get("fedi_pre")
        assert pre
        done = await fedi.http.post("/login", data={
            "csrf": token_in(page), "username": "ann", "password": PASSWORD})
        assert done.status_code == 303
        session = session_cookie(fedi.http)
        assert session not in (None, "planted-by-attacker", pre)
        # Neither planted value opens the account.
        for value in ("planted-by-attacker", pre):
            async with browser(fedi) as attacker:
                attacker.cookies.set("fedi_session", value, domain="fedi.test")
                assert (await attacker.get("/settings")).status_code == 303
        # Logging in again gives a new session id.
        await post_form(fedi.http, "/settings", "/logout")
        await log_in(fedi.http, "ann")
        assert session_cookie(fedi.http) not in (None, session)


async def test_session_cookie_flags(database_url: str) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        done = await log_in(fedi.http, "ann")
        cookie = next(v for k, v in done.headers.multi_items()
                      if k == "set-cookie" and v.startswith("fedi_session="))
        lowered = cookie.lower()
        assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
        assert "secure" not in lowered  # http base URL; https → Secure (below)
    response = Response()
    set_cookie(response, Settings(base_url="https://fedi.example"), "fedi_session", "x", 60)
    assert "secure" in response.headers["set-cookie"].lower()


async def test_wrong_password_and_unknown_user_get_the_same_answer(database_url: str) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        wrong = await log_in(fedi.http, "ann", "not the password")
        nobody = await log_in(fedi.http, "nobody", "not the password")
        assert wrong.status_code == nobody.status_code == 400
        assert "user name or password is wrong" in wrong.text
        assert "user name or password is wrong" in nobody.text
        assert session_cookie(fedi.http) is None


async def test_login_redirects_only_within_the_site(database_url: str) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        done = await log_in(fedi.http, "ann", next="https://evil.example/")
        assert done.headers["location"] == "/"
        fedi.http.cookies.clear()
        done = await log_in(fedi.http, "ann", next="//evil.example/")
        assert done.headers["location"] == "/"
        fedi.http.cookies.clear()
        done = await log_in(fedi.http, "ann", next="/settings")
        assert done.headers["location"] == "/settings"


async def test_password_change_needs_the_current_one_and_ends_other_sessions(
    database_url: str,
) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        async with browser(fedi) as phone:
            await log_in(phone, "ann")
            await log_in(fedi.http, "ann")
            wrong = await post_form(fedi.http, "/settings", "/settings/password",
                                    current="not it at all", new="a brand new password")
            assert wrong.status_code == 400 and "current password is wrong" in wrong.text
            assert (await phone.get("/settings")).status_code == 200
            done = await post_form(fedi.http, "/settings", "/settings/password",
                                   current=PASSWORD, new="a brand new password")
            assert done.status_code == 303
            assert (await fedi.http.get("/settings")).status_code == 200  # this one stays
            assert (await phone.get("/settings")).status_code == 303  # the other is out
        fedi.http.cookies.clear()
        assert (await log_in(fedi.http, "ann")).status_code == 400
        assert (await log_in(fedi.http, "ann", "a brand new password")).status_code == 303


async def test_an_expired_session_leads_to_login_with_a_message(database_url: str) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        await log_in(fedi.http, "ann")
        assert (await fedi.http.get("/settings")).status_code == 200
        async with fedi.services.sessionmaker() as session, session.begin():
            for row in (await session.execute(select(WebSession))).scalars():
                row.expires_at = 1.0
        # A form posted with the expired session changes nothing either.
        refused = await fedi.http.post("/settings/profile", data={
            "csrf": "x", "display_name": "Too late"})
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
        gone = await fedi.http.get("/settings")
        assert gone.status_code == 303
        assert gone.headers["location"] == "/login?next=/settings&m=expired"
        page = await fedi.http.get(gone.headers["location"])
        assert "Your session has expired" in page.text
        assert 'value="/settings"' in page.text
        assert await _count(fedi, WebSession) == 0
        async with fedi.services.sessionmaker() as session:
            actor = (await session.execute(select(Actor).where(Actor.username == "ann"))
                     ).scalar_one()
            assert actor.name is None
