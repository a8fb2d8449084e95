"""FEDI_AUTHORIZED_FETCH: every ActivityPub fetch must be signed; pages still work."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fedi.activitypub.httpsig import sign_request
from fedi.actors.local import create_group, create_user
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

AP = {"Accept": "application/activity+json"}


@pytest.fixture
async def remote() -> AsyncIterator[FakeRemote]:
    server = FakeRemote()
    server.add_actor("alice")
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("required", [True, False])
async def test_signatures_required_on_fetches(
    database_url: str, remote: FakeRemote, required: bool
) -> None:
    async with running_app(database_url, authorized_fetch=required) as fedi:
        await _setup(fedi)
        url = f"{BASE_URL}/groups/cats/outbox"
        unsigned = await fedi.http.get(url, headers=AP)
        signed = await fedi.http.get(
            url, headers=sign_request("cavage", "GET", url, AP, None, remote.actors["alice"].key)
        )
        assert signed.status_code == 200
        if required:
            assert unsigned.status_code == 401
            assert "signed fetches" in unsigned.json()["error"]
        else:
            assert unsigned.status_code == 200
        # The HTML page is for browsers, which cannot sign.
        page = await fedi.http.get(f"{BASE_URL}/groups/cats", headers={"Accept": "text/html"})
        assert page.status_code == 200
        # A bad signature is refused either way.
        forged = sign_request("cavage", "GET", url, AP, None, remote.actors["alice"].key)
        forged["Signature"] = forged["Signature"].replace('signature="', 'signature="AAAA')
        assert (await fedi.http.get(url, headers=forged)).status_code == 401


async def _setup(fedi: InProcess) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        await create_user(session, fedi.services.urls, "owner")
        await create_group(session, fedi.services.urls, "cats", owner="owner")
