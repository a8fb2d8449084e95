"""Login throttling (per account, per address, behind proxies) and TOTP two-factor login."""

from __future__ import annotations

import re
import time

from fedi.accounts import totp
from tests.accounts.support import (
    PASSWORD,
    app,
    browser,
    log_in,
    post_form,
    session_cookie,
    sign_up,
)


async def test_five_failures_lock_the_account_for_everyone(database_url: str) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        for _ in range(5):
            assert (await log_in(fedi.http, "ann", "wrong password!")).status_code == 400
        # Now even the right password waits, from any address, with a clear message.
        locked = await log_in(fedi.http, "ann")
        assert locked.status_code == 429
        assert "too many failed sign-ins for this account" in locked.text
        assert session_cookie(fedi.http) is None
        # Other accounts are not locked by ann's failures.
        async with browser(fedi) as other:
            await sign_up(other, "bob")
            assert (await log_in(other, "bob")).status_code == 303


async def test_twenty_failures_from_one_address_lock_the_address(database_url: str) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        for i in range(20):  # spread over many names: no account reaches its own limit
            await log_in(fedi.http, f"guess{i % 5}x{i}", "wrong password!")
        locked = await log_in(fedi.http, "ann")
        assert locked.status_code == 429
        assert "too many failed sign-ins from your address" in locked.text


async def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(database_url: str) -> None:
    async def spray(fedi_http: object, count: int) -> None:
        for i in range(count):
            shown = await fedi.http.get("/login")
            token = re.search(r'name="csrf" value="([^"]+)"', shown.text)
            assert token
            await fedi.http.post("/login", headers={"X-Forwarded-For": f"203.0.113.{i}"},
                                 data={"csrf": token.group(1), "username": f"n{i}",
                                       "password": "wrong password!"})

    # Not trusted: a client cannot dodge the per-address limit by writing the header.
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        await spray(fedi.http, 20)
        assert (await log_in(fedi.http, "ann")).status_code == 429
    # Trusted proxy (the test client's 127.0.0.1): each forwarded address counts on its own.
    async with app(database_url, trusted_proxies=("127.0.0.0/8",)) as fedi:
        from sqlalchemy import delete

        from fedi.store.models import LoginAttempt
        async with fedi.services.sessionmaker() as session, session.begin():
            await session.execute(delete(LoginAttempt))
        await spray(fedi.http, 20)
        assert (await log_in(fedi.http, "ann")).status_code == 303


async def test_totp_setup_and_login(database_url: str) -> None:
    async with app(database_url) as fedi:
        await sign_up(fedi.http, "ann")
        await log_in(fedi.http, "ann")
        page = await fedi.http.get("/settings")
        secret = re.search(r'name="secret" value="([A-Z2-7]{32})"', page.text)
        assert secret and "otpauth://totp/" in page.text
        key = secret.group(1)
        wrong = await post_form(fedi.http, "/settings", "/settings/totp", secret=key,
                                code="000000" if totp.code_at(key, time.time()) != "000000"
                                else "111111")
        assert wrong.status_code == 400 and "was not turned on" in wrong.text
        on = await post_form(fedi.http, "/settings", "/settings/totp", secret=key,
                             code=totp.code_at(key, time.time()))
        assert on.status_code == 303
        async with browser(fedi) as laptop:
            asked = await log_in(laptop, "ann")
            assert asked.status_code == 400 and 'name="code"' in asked.text
            assert session_cookie(laptop) is None
            bad = await log_in(laptop, "ann", code="12345x")
            assert bad.status_code == 400 and "code is wrong" in bad.text
            assert session_cookie(laptop) is None
            good = await log_in(laptop, "ann", code=totp.code_at(key, time.time()))
            assert good.status_code == 303 and session_cookie(laptop)


def test_totp_matches_rfc_6238_vectors() -> None:
    # RFC 6238 appendix B, SHA-1 secret "12345678901234567890", 8 digits → last 6 here.
    import base64

    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp.code_at(secret, 59) == "287082"
    assert totp.code_at(secret, 1111111109) == "081804"
    assert totp.code_at(secret, 2000000000) == "279037"
    assert totp.verify(secret, "279037", 2000000000 + 30)  # one step of drift
    assert not totp.verify(secret, "279037", 2000000000 + 95)
    assert PASSWORD  # the shared fixture password is long enough for the policy
