"""Outgoing e-mail over FEDI_SMTP_URL (smtp://, smtp+starttls://, smtps://)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from fedi.errors import FediError

TIMEOUT = 20


class Mailer:
    def __init__(self, url: str, sender: str) -> None:
        self._url = urlsplit(url)
        self.sender = sender

    async def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(body)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            # The reason only: never the URL (it may carry the SMTP password).
            raise FediError(f"the e-mail could not be sent ({type(exc).__name__})") from None

    def _send(self, message: EmailMessage) -> None:
        url = self._url
        host = url.hostname or "localhost"
        if url.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, url.port or 465, timeout=TIMEOUT,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(host, url.port or 25, timeout=TIMEOUT)
        with client:
            if url.scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(message)
