"""Joining across servers from a browser: "join from your own server" sends a person to the
follow page their server names in WebFinger, and /authorize_interaction takes a person here
from a link on another server to the looked-up group or person."""

from __future__ import annotations

from urllib.parse import quote, unquote

from aiohttp import web

from fedi.actors.local import create_group, create_user
from tests.accounts.support import app, browser, log_in, post_form, sign_up, token_in
from tests.support.app import BASE_URL, InProcess
from tests.support.remote import FakeRemote

SUBSCRIBE = "http://ostatus.org/schema/1.0/subscribe"


class HomeServer(FakeRemote):
    """A person's own server: WebFinger with (or without) a subscribe template, actors."""

    with_template: bool = True
    asked: int = 0

    async def start(self) -> None:
        application = web.Application()
        application.router.add_get("/.well-known/webfinger", self._finger)
        application.router.add_get("/users/{name}", self._actor)
        await self.serve(application)

    async def _finger(self, request: web.Request) -> web.StreamResponse:
        self.asked += 1
        links: list[dict[str, str]] = [{"rel": "self", "type": "application/activity+json",
                                        "href": f"{self.base_url}/users/rem"}]
        if self.with_template:
            links.append({"rel": SUBSCRIBE,
                          "template": f"{self.base_url}/authorize_interaction?uri={{uri}}"})
        return web.json_response({"subject": request.query["resource"], "links": links})


async def _groups(fedi: InProcess) -> None:
    urls = fedi.services.urls
    async with fedi.services.sessionmaker() as session, session.begin():
        await create_user(session, urls, "ann")
        await create_group(session, urls, "town", owner="ann", title="Town")
        await create_group(session, urls, "club", owner="ann", privacy="private")
        await create_group(session, urls, "cellar", owner="ann", privacy="hidden")


async def test_join_from_your_server_redirects_to_its_follow_page(database_url: str) -> None:
    home = HomeServer()
    await home.start()
    try:
        async with app(database_url) as fedi:
            await _groups(fedi)
            page = await fedi.http.get("/groups/town/remote-follow")
            assert page.status_code == 200
            assert '<label for="remote-handle">' in page.text
            # Browsers check form-action on the redirect too: this page allows it.
            assert "form-action 'self' https: http:" in page.headers["content-security-policy"]
            handle = f"rem@127.0.0.1:{home.port}"
            sent = await post_form(fedi.http, "/groups/town/remote-follow", handle=handle)
            assert sent.status_code == 303
            assert sent.headers["location"] == (
                f"{home.base_url}/authorize_interaction?uri="
                f"{quote(BASE_URL + '/groups/town', safe='')}")
            # A private group is joined by request the same way.
            private = await post_form(fedi.http, "/groups/club/remote-follow",
                                      handle=f"@{handle}")
            assert private.status_code == 303
            assert unquote(private.headers["location"]).endswith("uri=" + BASE_URL
                                                                + "/groups/club")
    finally:
        await home.stop()


async def test_clear_messages_and_nothing_asked_without_the_form_token(
    database_url: str,
) -> None:
    home = HomeServer()
    home.with_template = False
    await home.start()
    try:
        async with app(database_url) as fedi:
            await _groups(fedi)
            handle = f"rem@127.0.0.1:{home.port}"
            no_link = await post_form(fedi.http, "/groups/town/remote-follow", handle=handle)
            assert no_link.status_code == 400
            assert "does not say where to follow from" in no_link.text
            assert f'value="{handle}"' in no_link.text  # kept, to correct it
            gone = FakeRemote()  # a port nobody answers on
            unreachable = await post_form(fedi.http, "/groups/town/remote-follow",
                                          handle=f"rem@127.0.0.1:{gone.port}")
            assert unreachable.status_code == 400
            assert "could not reach 127.0.0.1" in unreachable.text
            for bad in ("", "no-at-sign", "a@b/c"):
                refused = await post_form(fedi.http, "/groups/town/remote-follow", handle=bad)
                assert refused.status_code == 400, bad
                assert "Nothing was done" in refused.text or (
                    "Write your handle" in refused.text), bad
            asked = home.asked
            page = await fedi.http.get("/groups/town/remote-follow")
            forged = await fedi.http.post("/groups/town/remote-follow",
                                          data={"csrf": token_in(page) + "x", "handle": handle})
            assert forged.status_code == 403 and home.asked == asked
            for name in ("cellar", "nobody"):
                assert (await fedi.http.get(f"/groups/{name}/remote-follow")).status_code == 404
    finally:
        await home.stop()


async def test_webfinger_names_our_authorize_interaction_template(database_url: str) -> None:
    async with app(database_url) as fedi:
        await _groups(fedi)
        for resource in ("acct:ann@fedi.test", "acct:town@fedi.test"):
            jrd = (await fedi.http.get("/.well-known/webfinger",
                                       params={"resource": resource})).json()
            templates = [link["template"] for link in jrd["links"]
                         if link["rel"] == SUBSCRIBE]
            assert templates == [f"{BASE_URL}/authorize_interaction?uri={{uri}}"]


async def test_authorize_interaction_logs_in_then_looks_the_actor_up(
    database_url: str,
) -> None:
    home = HomeServer()
    home.add_actor("rem")
    home.actor_types["rem"] = "Group"
    await home.start()
    try:
        async with app(database_url) as fedi:
            target = f"{home.base_url}/users/rem"
            anonymous = await fedi.http.get("/authorize_interaction", params={"uri": target})
            assert anonymous.status_code == 303
            assert anonymous.headers["location"] == (
                "/login?next=" + quote(f"/authorize_interaction?uri={quote(target, safe='')}",
                                       safe="") + "&m=login")
            async with browser(fedi) as person:
                assert (await sign_up(person, "bea")).status_code == 303
                assert (await log_in(person, "bea")).status_code == 303
                asked = await person.get("/authorize_interaction", params={"uri": target})
                assert asked.status_code == 303
                assert asked.headers["location"] == f"/lookup?q={quote(target, safe='')}"
                shown = await person.get(asked.headers["location"])
                assert shown.status_code == 200 and "rem" in shown.text
                empty = await person.get("/authorize_interaction")
                assert empty.status_code == 200 and 'for="interaction-uri"' in empty.text
                junk = await person.get("/authorize_interaction",
                                        params={"uri": "javascript:alert(1)"})
                assert junk.status_code == 400 and "Give a web address" in junk.text
    finally:
        await home.stop()
