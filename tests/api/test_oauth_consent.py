"""The consent page (/oauth/authorize) as a browser meets it, and PKCE at the token
endpoint."""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import update

from fedi.accounts import oauth
from fedi.accounts.oauth_grants import s256
from fedi.store.models import OAuthCode
from tests.accounts.support import log_in, token_in
from tests.api.oauth_flow import (
    CALLBACK,
    answer_of,
    authorize_url,
    code_for,
    consent,
    exchange,
    person,
    register,
)
from tests.api.support import api_app, client


async def test_the_consent_page_names_app_person_and_scopes_and_authorize_sends_a_code(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http, website="https://app.example")
        page = await alice.get(authorize_url(app, scope="read write:statuses", state="xyz"))
        assert page.status_code == 200
        assert "Test App" in page.text and "@alice@" in page.text
        assert "write:statuses" in page.text and "Authorise" in page.text
        assert "Deny" in page.text
        policy = page.headers["content-security-policy"]
        assert "form-action 'self' https://app.example" in policy
        assert "frame-ancestors 'none'" in policy
        answer = await consent(alice, app, scope="read write:statuses", state="xyz")
        back = answer_of(answer)
        assert answer.headers["location"].startswith(CALLBACK + "?")
        assert back["state"] == "xyz" and len(back["code"]) > 30
        token = (await exchange(fedi.http, app, back["code"])).json()
        assert token["scope"] == "read write:statuses"


async def test_the_consent_page_does_not_promise_push_notifications(database_url: str) -> None:
    # Apps ask for `push` by habit; no Web Push is offered here, and the page says so
    # rather than describing a permission that does nothing.
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        page = await alice.get(authorize_url(app, scope="read push"))
        assert page.status_code == 200
        assert "does not send" in page.text
        assert "send you push notifications" not in page.text


async def test_deny_sends_access_denied_back_with_the_state(database_url: str) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        back = answer_of(await consent(alice, app, decision="deny", state="s1"))
        assert back == {"error": "access_denied", "state": "s1",
                        "error_description": "alice did not authorise the app"}


async def test_not_signed_in_goes_to_login_and_comes_back_to_the_same_request(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        await alice.post("/logout", data={"csrf": token_in(await alice.get("/settings"))})
        url = authorize_url(app, state="s2")
        answer = await alice.get(url)
        assert answer.status_code == 303
        target = urlsplit(answer.headers["location"])
        assert target.path == "/login"
        back_to = parse_qs(target.query)["next"][0]
        assert parse_qs(urlsplit(back_to).query) == parse_qs(urlsplit(url).query)
        logged = await log_in(alice, "alice", next=back_to)
        assert unquote(logged.headers["location"]) == unquote(back_to)
        assert (await alice.get(back_to)).status_code == 200
        forced = await alice.get(url + "&force_login=true")
        assert forced.status_code == 303 and "/login?" in forced.headers["location"]
        assert "force_login" not in unquote(forced.headers["location"])


async def test_an_unknown_app_or_unregistered_redirect_is_a_page_never_a_redirect(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        unknown = await alice.get(authorize_url({**app, "client_id": "nope"}))
        assert unknown.status_code == 400 and "not registered" in unknown.text
        elsewhere = await alice.get(authorize_url(app, redirect_uri="https://evil.example/"))
        assert elsewhere.status_code == 400 and "did not register" in elsewhere.text
        assert "location" not in elsewhere.headers
        # A forged POST with an unregistered URI is refused the same way.
        page = await alice.get(authorize_url(app))
        forged = await alice.post("/oauth/authorize", data={
            "csrf": token_in(page), "decision": "allow", "response_type": "code",
            "client_id": app["client_id"], "redirect_uri": "https://evil.example/"})
        assert forged.status_code == 400 and "location" not in forged.headers
        # Known app and URI: the other errors go back to the app.
        wide = await alice.get(authorize_url(app, scope="admin:read", state="q"))
        assert answer_of(wide)["error"] == "invalid_scope"
        assert answer_of(wide)["state"] == "q"
        token_kind = await alice.get(authorize_url(app, response_type="token"))
        assert answer_of(token_kind)["error"] == "unsupported_response_type"


async def test_the_consent_form_needs_its_csrf_token(database_url: str) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        forged = await alice.post("/oauth/authorize", data={
            "decision": "allow", "response_type": "code", "client_id": app["client_id"],
            "redirect_uri": CALLBACK, "scope": "read"})
        assert forged.status_code == 403 and "location" not in forged.headers


async def test_the_out_of_band_uri_shows_the_code_to_copy(database_url: str) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http, redirect_uris=oauth.OOB)
        shown = await consent(alice, app)
        assert shown.status_code == 200 and "Copy this code" in shown.text
        code = shown.text.split('id="oauth-code" value="', 1)[1].split('"', 1)[0]
        token = await exchange(fedi.http, app, code)
        assert token.status_code == 200 and token.json()["scope"] == "read write"


async def test_custom_scheme_redirects_are_allowed_by_the_pages_policy(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http, redirect_uris="elk://callback", as_json=True)
        page = await alice.get(authorize_url(app))
        assert "form-action 'self' elk:;" in page.headers["content-security-policy"] + ";"
        assert "sent back to the app at elk://callback" in page.text
        verifier = secrets.token_urlsafe(48)
        answer = await consent(alice, app, state="e", code_challenge=s256(verifier),
                               code_challenge_method="S256")
        assert answer.headers["location"].startswith("elk://callback?code=")
        # As masto.js sends it: JSON, PKCE.
        token = await fedi.http.post("/oauth/token", json={
            "grant_type": "authorization_code", "code": answer_of(answer)["code"],
            "client_id": app["client_id"], "client_secret": app["client_secret"],
            "redirect_uri": "elk://callback", "code_verifier": verifier,
            "scope": "read write"})
        assert token.status_code == 200 and token.json()["scope"] == "read write"


async def test_pkce_s256_the_verifier_must_match_and_plain_is_refused(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        verifier = secrets.token_urlsafe(48)
        challenge = {"code_challenge": s256(verifier), "code_challenge_method": "S256"}
        code = await code_for(alice, app, **challenge)
        missing = await exchange(fedi.http, app, code)
        assert missing.json()["error"] == "invalid_grant"
        assert "code_verifier is required" in missing.json()["error_description"]
        wrong = await exchange(fedi.http, app, code, code_verifier=secrets.token_urlsafe(48))
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        right = await exchange(fedi.http, app, code, code_verifier=verifier)
        assert right.status_code == 200, right.text
        reused = await exchange(fedi.http, app, code, code_verifier=verifier)
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        plain = await alice.get(authorize_url(app, code_challenge=verifier[:43],
                                              code_challenge_method="plain"))
        assert answer_of(plain)["error"] == "invalid_request"
        assert "S256" in answer_of(plain)["error_description"]
        no_method = await alice.get(authorize_url(app, code_challenge=s256(verifier)))
        assert answer_of(no_method)["error"] == "invalid_request"


async def test_an_expired_code_is_refused(database_url: str) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        verifier = secrets.token_urlsafe(48)
        code = await code_for(alice, app, code_challenge=s256(verifier),
                              code_challenge_method="S256")
        async with fedi.services.sessionmaker() as session, session.begin():
            await session.execute(update(OAuthCode).values(expires_at=time.time() - 1))
        expired = await exchange(fedi.http, app, code, code_verifier=verifier)
        assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"
        assert "expired" in expired.json()["error_description"]


async def test_authorised_apps_page_lists_the_app_and_revoke_ends_its_tokens(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http, website="https://app.example")
        tokens = [(await exchange(fedi.http, app, await code_for(alice, app))).json()
                  ["access_token"] for _ in range(2)]
        page = await alice.get("/settings/apps")
        assert page.status_code == 200
        assert "Test App" in page.text and "read write" in page.text
        assert "Log out everywhere" in page.text
        assert page.text.count('action="/settings/apps/revoke"') == 1
        app_id = page.text.split('name="app" value="', 1)[1].split('"', 1)[0]
        async with person(fedi, "bob") as bob:
            theirs = await bob.post("/settings/apps/revoke", data={
                "csrf": token_in(await bob.get("/settings")), "app": app_id})
            assert "m=none" in theirs.headers["location"]  # bob cannot touch alice's grant
        async with client(fedi, tokens[0]) as api:
            assert (await api.get("/api/v1/apps/verify_credentials")).status_code == 200
        revoked = await alice.post("/settings/apps/revoke", data={
            "csrf": token_in(page), "app": app_id})
        assert revoked.status_code == 303
        after = await alice.get(revoked.headers["location"])
        assert "taken back" in after.text and "No app can use your account" in after.text
        for raw in tokens:
            async with client(fedi, raw) as api:
                assert (await api.get("/api/v1/apps/verify_credentials")).status_code == 401


async def test_log_out_everywhere_also_signs_out_every_app(database_url: str) -> None:
    async with api_app(database_url) as fedi, person(fedi, "alice") as alice:
        app = await register(fedi.http)
        raw = (await exchange(fedi.http, app, await code_for(alice, app))).json()["access_token"]
        settings = await alice.get("/settings")
        assert "/settings/apps" in settings.text
        await alice.post("/settings/logout-everywhere", data={"csrf": token_in(settings)})
        async with client(fedi, raw) as api:
            assert (await api.get("/api/v1/apps/verify_credentials")).status_code == 401
