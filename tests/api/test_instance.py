"""The instance as strict Mastodon clients read it (fields from CLIENT-API.md), its side
endpoints, and NodeInfo / host-meta for browser clients on other origins."""

from __future__ import annotations

import re
from typing import Any

from fedi.accounts import instance as about_settings
from fedi.accounts import registration
from fedi.groups.posting import MAX_TEXT
from fedi.store.models import Actor
from tests.api.support import api_app, client, make_user, token_for

# Mastodon.py's version parse (outside its try block: a miss throws).
MASTODON_PY_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
V2_FIELDS = ("domain", "version", "title", "description", "registrations", "configuration",
             "usage", "thumbnail", "languages", "contact", "rules", "source_url")
V1_FIELDS = ("uri", "title", "email", "version", "short_description", "description",
             "stats", "registrations", "urls", "thumbnail", "languages",
             "approval_required", "invites_enabled", "rules")


async def _setup(fedi: Any) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        await about_settings.update(session, description="A place for gardeners.\n\nMore.",
                                    rules=("Be kind", "No spam"),
                                    contact="admin@fedi.test")
        await registration.set_mode(session, "approval")
        session.add(Actor(uri="https://far.example/users/zed", type="Person", local=False,
                          username="zed", domain="far.example"))


async def test_v2_has_every_field_strict_clients_decode(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await _setup(fedi)
        await make_user(fedi, "root", admin=True)
        async with client(fedi, None) as http:
            answer = await http.get("/api/v2/instance")
        assert answer.status_code == 200
        body = answer.json()
        for name in V2_FIELDS:
            assert name in body, name
        assert body["domain"] == "fedi.test"
        match = MASTODON_PY_VERSION.match(body["version"])
        assert match is not None and tuple(map(int, match.groups())) >= (4, 0, 0)
        assert "fedi 0.1.0" in body["version"]
        assert body["registrations"] == {"enabled": True, "approval_required": True,
                                         "message": None, "url": None}
        config = body["configuration"]
        assert config["urls"]["streaming"] == "ws://fedi.test"
        assert config["accounts"]["max_featured_tags"] == 0
        assert config["statuses"]["max_characters"] == MAX_TEXT
        assert config["statuses"]["max_media_attachments"] == 0
        assert set(config["polls"]) == {"max_options", "max_characters_per_option",
                                        "min_expiration", "max_expiration"}
        assert config["translation"] == {"enabled": False}
        assert body["api_versions"] == {"mastodon": 1}  # not 2: no grouped notifications
        assert body["contact"]["email"] == "admin@fedi.test"
        assert body["contact"]["account"]["username"] == "root"
        assert [r["text"] for r in body["rules"]] == ["Be kind", "No spam"]
        assert body["description"] == "A place for gardeners."
        assert answer.headers["access-control-allow-origin"] == "*"


async def test_v1_has_every_field_and_counts(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await _setup(fedi)
        await make_user(fedi, "alice")
        token = await token_for(fedi, "bob")
        async with client(fedi, token) as http:  # a token is fine on a public endpoint
            body = (await http.get("/api/v1/instance")).json()
            peers = (await http.get("/api/v1/instance/peers")).json()
            rules = (await http.get("/api/v1/instance/rules")).json()
            extended = (await http.get("/api/v1/instance/extended_description")).json()
            activity = await http.get("/api/v1/instance/activity")
            blocks = await http.get("/api/v1/instance/domain_blocks")
        for name in V1_FIELDS:
            assert name in body, name
        assert MASTODON_PY_VERSION.match(body["version"])
        assert body["uri"] == "fedi.test"
        assert body["registrations"] is True and body["approval_required"] is True
        assert body["stats"] == {"user_count": 2, "status_count": 0, "domain_count": 1}
        assert body["urls"] == {"streaming_api": "ws://fedi.test"}
        assert body["configuration"]["statuses"]["max_characters"] == MAX_TEXT
        assert len(body["configuration"]["polls"]) == 4
        assert all(isinstance(v, int) for v in body["configuration"]["polls"].values())
        assert body["email"] == "admin@fedi.test"
        assert body["contact_account"] is None  # no admin yet
        assert peers == ["far.example"]
        assert rules == [{"id": "1", "text": "Be kind", "hint": ""},
                         {"id": "2", "text": "No spam", "hint": ""}]
        assert extended["content"] == "<p>A place for gardeners.</p><p>More.</p>"
        assert activity.json() == [] and blocks.json() == []


async def test_closed_registration_and_a_contact_that_is_not_an_email(database_url: str
                                                                      ) -> None:
    async with api_app(database_url, mode="closed") as fedi:
        async with fedi.services.sessionmaker() as session, session.begin():
            await about_settings.update(session, contact="https://fedi.test/@root")
        async with client(fedi, None) as http:
            v2 = (await http.get("/api/v2/instance")).json()
            v1 = (await http.get("/api/v1/instance")).json()
        assert v2["registrations"]["enabled"] is False
        assert v2["contact"]["email"] == "" and v1["email"] == ""
        assert v1["registrations"] is False


async def test_nodeinfo_and_host_meta_answer_browser_clients(database_url: str) -> None:
    async with api_app(database_url, mode="open") as fedi:
        async with client(fedi, None) as http:
            origin = {"Origin": "https://phanpy.example"}
            links = await http.get("/.well-known/nodeinfo", headers=origin)
            info = await http.get("/nodeinfo/2.0", headers=origin)
            meta = await http.get("/.well-known/host-meta", headers=origin)
            preflight = await http.options("/nodeinfo/2.1", headers={
                **origin, "Access-Control-Request-Method": "GET"})
        for answer in (links, info, meta):
            assert answer.status_code == 200
            assert answer.headers["access-control-allow-origin"] == "*"
        assert preflight.status_code == 204
        assert info.json()["software"] == {"name": "fedi", "version": "0.1.0"}
        assert info.json()["openRegistrations"] is True
        assert "lrdd" in meta.text
