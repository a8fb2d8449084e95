"""OAuth for Mastodon apps: registration, every grant of the token endpoint, refresh
rotation, revocation and the authorization-server metadata."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from fedi.accounts import oauth
from fedi.store.models import Account, WebSession
from tests.accounts.support import PASSWORD
from tests.api.oauth_flow import CALLBACK, code_for, exchange, person, register
from tests.api.support import api_app, client


async def test_an_app_registers_by_form_or_json_and_gets_mastodons_application(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        by_form = await register(fedi.http, redirect_uris=f"{CALLBACK}\nelk://callback",
                                 website="https://app.example")
        assert by_form["name"] == "Test App"
        assert by_form["website"] == "https://app.example"
        assert by_form["scopes"] == ["read", "write", "follow", "push"]
        assert by_form["redirect_uris"] == [CALLBACK, "elk://callback"]
        assert by_form["redirect_uri"] == f"{CALLBACK}\nelk://callback"
        assert by_form["client_id"] and by_form["client_secret"] and by_form["id"].isdigit()
        assert by_form["vapid_key"] == ""
        by_json = await register(fedi.http, as_json=True, scopes="read",
                                 redirect_uris=[oauth.OOB, "http://127.0.0.1:8123/cb"])
        assert by_json["redirect_uris"] == [oauth.OOB, "http://127.0.0.1:8123/cb"]
        assert by_json["client_id"] != by_form["client_id"]
        bare = await fedi.http.post("/api/v1/apps", data={
            "client_name": "Bare", "redirect_uris": oauth.OOB})
        assert bare.json()["scopes"] == ["read"]
        # The secret is stored only as its hash.
        async with fedi.services.sessionmaker() as session:
            app = await oauth.find_app(session, by_form["client_id"])
            assert app is not None and by_form["client_secret"] not in app.client_secret_hash


@pytest.mark.parametrize(("fields", "said"), [
    ({"redirect_uris": CALLBACK, "scopes": "read admin:write"}, "admin:write"),
    ({"redirect_uris": "javascript:alert(1)"}, "scheme"),
    ({"redirect_uris": "http://app.example/cb"}, "https"),
    ({"redirect_uris": "/relative"}, "absolute"),
    ({"redirect_uris": "https://app.example/cb#frag"}, "fragment"),
    ({"redirect_uris": ""}, "redirect_uris is required"),
    ({"redirect_uris": CALLBACK, "client_name": ""}, "client_name is required"),
    ({"redirect_uris": CALLBACK, "website": "ftp://x"}, "website"),
])
async def test_a_bad_registration_is_a_422_that_says_what_is_wrong(
    database_url: str, fields: dict[str, str], said: str,
) -> None:
    async with api_app(database_url) as fedi:
        answer = await fedi.http.post("/api/v1/apps", data={"client_name": "App", **fields})
        assert answer.status_code == 422
        assert said in answer.json()["error"]


async def test_client_credentials_give_an_app_token_that_verifies_the_app_only(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        app = await register(fedi.http, scopes="read write")
        answer = await fedi.http.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": app["client_id"],
            "client_secret": app["client_secret"], "scope": "read"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["token_type"] == "Bearer" and body["scope"] == "read"
        assert isinstance(body["created_at"], int) and "refresh_token" not in body
        assert answer.headers["cache-control"] == "no-store"
        async with client(fedi, body["access_token"]) as api:
            verified = await api.get("/api/v1/apps/verify_credentials")
            assert verified.status_code == 200
            assert verified.json()["name"] == "Test App"
            assert "client_secret" not in verified.json()
            # No person behind an app token.
            me = await api.get("/api/v1/accounts/verify_credentials")
            assert me.status_code in (401, 403, 422)
        wider = await fedi.http.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": app["client_id"],
            "client_secret": app["client_secret"], "scope": "read push"})
        assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
        assert (await fedi.http.get("/api/v1/apps/verify_credentials")).status_code == 401


async def test_client_authentication_by_http_basic_and_a_wrong_secret_is_invalid_client(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        app = await register(fedi.http)
        pair = f"{quote(app['client_id'])}:{quote(app['client_secret'])}"
        basic = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        answer = await fedi.http.post("/oauth/token", headers=basic,
                                      data={"grant_type": "client_credentials"})
        assert answer.status_code == 200 and answer.json()["scope"] == "read"
        wrong = await fedi.http.post("/oauth/token", json={
            "grant_type": "client_credentials", "client_id": app["client_id"],
            "client_secret": "not-it"})
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client" and wrong.json()["error_description"]
        unknown = await fedi.http.post("/oauth/token", data={"grant_type": "magic"})
        assert unknown.status_code == 400
        assert unknown.json()["error"] == "unsupported_grant_type"
        empty = await fedi.http.post("/oauth/token", data={})
        assert empty.json()["error"] == "invalid_request"


async def test_an_authorization_code_works_once_for_its_app_and_redirect_uri(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        code = await code_for(alice, app)
        wrong_uri = await exchange(fedi.http, app, code, redirect_uri="https://evil.example/")
        assert wrong_uri.status_code == 400 and wrong_uri.json()["error"] == "invalid_grant"
        other = await register(fedi.http)
        stolen = await fedi.http.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code, "client_id": other["client_id"],
            "client_secret": other["client_secret"], "redirect_uri": CALLBACK})
        assert stolen.json()["error"] == "invalid_grant"
        # The only registered URI may be left out (RFC 6749 §4.1.3), as at /oauth/authorize.
        answer = await fedi.http.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code, "client_id": app["client_id"],
            "client_secret": app["client_secret"]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["scope"] == "read write" and body["refresh_token"]
        async with client(fedi, body["access_token"]) as api:
            me = await api.get("/api/v1/accounts/verify_credentials")
            assert me.status_code == 200 and me.json()["username"] == "alice"
        again = await exchange(fedi.http, app, code)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_a_refresh_token_rotates_and_the_old_pair_stops_working(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        first = (await exchange(fedi.http, app, await code_for(alice, app))).json()
        refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                   "client_id": app["client_id"], "client_secret": app["client_secret"]}
        wider = await fedi.http.post("/oauth/token", data={**refresh, "scope": "read push"})
        assert wider.json()["error"] == "invalid_scope"
        answer = await fedi.http.post("/oauth/token", data=refresh)
        assert answer.status_code == 200, answer.text
        second = answer.json()
        assert second["scope"] == "read write"
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        async with client(fedi, first["access_token"]) as old:
            assert (await old.get("/api/v1/apps/verify_credentials")).status_code == 401
        async with client(fedi, second["access_token"]) as new:
            assert (await new.get("/api/v1/apps/verify_credentials")).status_code == 200
        reused = await fedi.http.post("/oauth/token", data=refresh)
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


async def test_the_password_grant_logs_in_by_name_or_email_through_the_site_rules(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        app = await register(fedi.http, scopes="read write")
        async with person(fedi, "alice"):
            pass
        fields = {"grant_type": "password", "client_id": app["client_id"],
                  "client_secret": app["client_secret"], "scope": "read"}
        answer = await fedi.http.post("/oauth/token", data={
            **fields, "username": "alice", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        async with client(fedi, answer.json()["access_token"]) as api:
            me = await api.get("/api/v1/accounts/verify_credentials")
            assert me.json()["username"] == "alice"
        async with fedi.services.sessionmaker() as session, session.begin():
            account = await session.get(Account, int(me.json()["id"]))
            assert account is not None
            account.email = "Alice@Example.org"
        by_email = await fedi.http.post("/oauth/token", data={
            **fields, "username": "alice@example.org", "password": PASSWORD})
        assert by_email.status_code == 200, by_email.text
        wrong = await fedi.http.post("/oauth/token", data={
            **fields, "username": "alice", "password": "wrong password"})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        assert "wrong" in wrong.json()["error_description"]
        for _ in range(5):
            await fedi.http.post("/oauth/token", data={
                **fields, "username": "alice", "password": "wrong again"})
        throttled = await fedi.http.post("/oauth/token", data={
            **fields, "username": "alice", "password": PASSWORD})
        assert throttled.json()["error"] == "invalid_grant"
        assert "too many" in throttled.json()["error_description"]
        # The grant opened no browser session for alice.
        async with fedi.services.sessionmaker() as session:
            count = (await session.execute(select(func.count()).select_from(WebSession)
                                           )).scalar_one()
            assert count == 1  # the one from signing in with the browser


async def test_an_admin_turns_the_password_grant_off_and_the_metadata_says_so(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        app = await register(fedi.http)
        async with person(fedi, "alice"):
            pass
        meta = (await fedi.http.get("/.well-known/oauth-authorization-server")).json()
        assert "password" in meta["grant_types_supported"]
        async with fedi.services.sessionmaker() as session, session.begin():
            await oauth.set_password_grant(session, False)
        meta = (await fedi.http.get("/.well-known/oauth-authorization-server")).json()
        assert meta["grant_types_supported"] == [
            "authorization_code", "client_credentials", "refresh_token"]
        answer = await fedi.http.post("/oauth/token", data={
            "grant_type": "password", "client_id": app["client_id"],
            "client_secret": app["client_secret"], "username": "alice",
            "password": PASSWORD})
        assert answer.status_code == 400
        assert answer.json()["error"] == "unsupported_grant_type"


async def test_the_metadata_lists_endpoints_scopes_and_s256(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        answer = await fedi.http.get("/.well-known/oauth-authorization-server",
                                     headers={"Origin": "https://elk.example"})
        meta = answer.json()
        base = fedi.settings.base_url
        assert answer.headers["access-control-allow-origin"] == "*"
        assert meta["issuer"] == f"{base}/"
        assert meta["authorization_endpoint"] == f"{base}/oauth/authorize"
        assert meta["token_endpoint"] == f"{base}/oauth/token"
        assert meta["revocation_endpoint"] == f"{base}/oauth/revoke"
        assert meta["app_registration_endpoint"] == f"{base}/api/v1/apps"
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert meta["response_types_supported"] == ["code"]
        assert set(meta["scopes_supported"]) == oauth.scope_rules.KNOWN
        assert meta["token_endpoint_auth_methods_supported"] == [
            "client_secret_basic", "client_secret_post"]
        assert meta["service_documentation"].startswith("https://")


async def test_revoking_a_token_ends_it_and_unknown_tokens_are_fine(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        app = await register(fedi.http)
        other = await register(fedi.http)
        issued = (await fedi.http.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": app["client_id"],
            "client_secret": app["client_secret"]})).json()["access_token"]
        creds = {"client_id": app["client_id"], "client_secret": app["client_secret"]}
        not_theirs = await fedi.http.post("/oauth/revoke", data={
            "token": issued, "client_id": other["client_id"],
            "client_secret": other["client_secret"]})
        assert not_theirs.status_code == 403
        assert not_theirs.json()["error"] == "unauthorized_client"
        async with client(fedi, issued) as api:
            assert (await api.get("/api/v1/apps/verify_credentials")).status_code == 200
            answer = await fedi.http.post("/oauth/revoke", data={"token": issued, **creds})
            assert answer.status_code == 200 and answer.json() == {}
            assert (await api.get("/api/v1/apps/verify_credentials")).status_code == 401
        again = await fedi.http.post("/oauth/revoke", data={"token": issued, **creds})
        assert again.status_code == 200
        unknown = await fedi.http.post("/oauth/revoke", data={"token": "nope", **creds})
        assert unknown.status_code == 200
        bad_client = await fedi.http.post("/oauth/revoke", data={
            "token": issued, "client_id": app["client_id"], "client_secret": "x"})
        assert bad_client.status_code == 401
