"""E-mail verification and password reset by mail, through a real SMTP server (aiosmtpd)
listening on a loopback port."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from fedi.store.models import Account, AccountToken, Actor
from tests.accounts.support import PASSWORD, app, browser, log_in, post_form, sign_up
from tests.support.app import BASE_URL

NEW = "a brand new password"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        self.arrived.set()
        return "250 OK"

    async def next_link(self, path: str) -> str:
        await asyncio.wait_for(self.arrived.wait(), 20)
        self.arrived.clear()
        body = self.messages[-1].get_payload(decode=True)
        assert isinstance(body, bytes)
        found = re.search(re.escape(BASE_URL) + path + r"[A-Za-z0-9_-]+", body.decode())
        assert found, body
        return found.group(0)[len(BASE_URL):]


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(inbox), "127.0.0.1", 0)
    yield inbox, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_verification_then_reset_by_mail(database_url: str, smtp: tuple[Inbox, int]
                                               ) -> None:
    inbox, port = smtp
    async with app(database_url, smtp_url=f"smtp://127.0.0.1:{port}",
                   smtp_from="fedi@fedi.test") as fedi:
        await sign_up(fedi.http, "ann", email="ann@example.org")
        verify = await inbox.next_link("/verify-email/")
        assert inbox.messages[-1]["To"] == "ann@example.org"
        # Before the address is confirmed, no reset goes to it.
        await post_form(fedi.http, "/reset", who="ann")
        await asyncio.sleep(0.3)
        assert len(inbox.messages) == 1
        confirmed = await fedi.http.get(verify)
        assert confirmed.status_code == 200 and "Confirmed" in confirmed.text
        assert (await fedi.http.get(verify)).status_code == 400  # single use

        # A logged-in session elsewhere ends when the password is reset.
        async with browser(fedi) as phone:
            await log_in(phone, "ann")
            asked = await post_form(fedi.http, "/reset", who="ANN@example.org")
            assert "a reset link is on its way" in asked.text
            link = await inbox.next_link("/reset/")
            assert PASSWORD not in str(inbox.messages[-1])
            short = await post_form(fedi.http, link, new="short")
            assert short.status_code == 400 and "too short" in short.text
            done = await post_form(fedi.http, link, new=NEW)
            assert done.status_code == 303
            assert (await phone.get("/settings")).status_code == 303
        again = await post_form(fedi.http, "/login", link, new="yet another password")
        assert again.status_code == 400 and "already been used" in again.text
        assert (await log_in(fedi.http, "ann")).status_code == 400
        assert (await log_in(fedi.http, "ann", NEW)).status_code == 303

        # Unknown names get the same answer and no mail.
        fedi.http.cookies.clear()
        asked = await post_form(fedi.http, "/reset", who="nobody")
        assert "a reset link is on its way" in asked.text
        await asyncio.sleep(0.3)
        assert len(inbox.messages) == 2

        # Tokens are stored hashed, and expire after an hour.
        async with fedi.services.sessionmaker() as session:
            hashes = list((await session.execute(select(AccountToken.token_hash))).scalars())
            assert link.rsplit("/", 1)[1] not in hashes
            account = (await session.execute(
                select(Account).join(Actor, Actor.id == Account.actor_id))).scalar_one()
            assert account.email_verified_at is not None
        await post_form(fedi.http, "/reset", who="ann")
        late = await inbox.next_link("/reset/")
        async with fedi.services.sessionmaker() as session, session.begin():
            for token in (await session.execute(select(AccountToken))).scalars():
                token.expires_at -= 3601
        expired = await fedi.http.get(late)
        assert expired.status_code == 400 and "expired" in expired.text


async def test_without_smtp_the_page_says_to_ask_the_admin(database_url: str) -> None:
    async with app(database_url) as fedi:
        page = await fedi.http.get("/reset")
        assert "fedi admin reset-password" in page.text
