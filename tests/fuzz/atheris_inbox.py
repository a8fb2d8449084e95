"""libFuzzer (atheris) harness for the inbox's parse-and-verify pipeline.

Drives the real `Receiver.receive` (signature header parsing, body parsing, host and key
checks, signature verification) with a fixed in-memory key and no database: a verified
activity is only recorded. Any exception out of `receive`, any status outside 2xx/4xx, a
refusal without a reason, or a log record at ERROR makes atheris report a crash and exit
non-zero. Run by tests/fuzz/test_atheris.py in a subprocess, with -runs=N.

Half the inputs are validly signed for their (fuzzed) body, so the fuzzer gets past the
signature and reaches the parser and the checks after it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import atheris

with atheris.instrument_imports(include=["fedi"]):
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from fedi.activitypub.httpsig import sign_request
    from fedi.activitypub.keys import SigningKey, generate_rsa_keypair
    from fedi.federation.receive import InboxRequest, Receiver
    from fedi.federation.resolve import KeyInfo

DOMAIN = "fuzz.test"
INBOX = f"http://{DOMAIN}/groups/cats/inbox"
ACTOR = "http://remote.test/users/alice"
KEY_ID = f"{ACTOR}#main-key"
PRIVATE, PUBLIC = generate_rsa_keypair()


class Resolver:
    """Knows one key; fetches nothing."""

    async def key(self, key_id: str) -> KeyInfo:
        return KeyInfo(key_id, ACTOR, PUBLIC)

    async def refresh_key(self, key_id: str) -> KeyInfo | None:
        return None


class Recorder(Receiver):
    async def _store(self, activity: Any, request: InboxRequest) -> None:
        self.stored = activity


class Errors(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            raise AssertionError(f"logged: {record.getMessage()}")


logging.getLogger().addHandler(Errors())
LOOP = asyncio.new_event_loop()
ENGINE = create_async_engine("sqlite+aiosqlite://")  # never connected: _store is replaced
RECEIVER = Recorder(async_sessionmaker(ENGINE), Resolver(), DOMAIN)  # type: ignore[arg-type]


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    signed = fdp.ConsumeBool()
    header = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 400))
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    headers = {"host": DOMAIN, "content-type": "application/activity+json"}
    if signed:
        made = sign_request("cavage", "POST", INBOX, headers, body, SigningKey(KEY_ID, PRIVATE))
        headers = {k.lower(): v for k, v in made.items()}
    else:
        headers["signature"] = header
    request = InboxRequest("POST", INBOX, headers, body, recipient=None)
    result = LOOP.run_until_complete(RECEIVER.receive(request))
    if not (200 <= result.status < 300 or 400 <= result.status < 500):
        raise AssertionError(f"status {result.status}: {result.reason}")
    if result.status >= 400 and not result.reason:
        raise AssertionError(f"status {result.status} without a reason")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
