"""Every page's header knows who is signed in: the front page, a group, a post, an invite."""

from __future__ import annotations

from fedi.actors.local import create_group, find_local
from fedi.groups.invites import create_invite
from fedi.groups.posting import post_to_group
from tests.accounts.support import app, browser, log_in, sign_up


async def test_pages_show_the_signed_in_person(database_url: str) -> None:
    async with app(database_url) as fedi:
        assert (await sign_up(fedi.http, "lou")).status_code in (200, 303)
        assert (await log_in(fedi.http, "lou")).status_code == 303
        async with fedi.services.sessionmaker() as session, session.begin():
            group = await create_group(session, fedi.services.urls, "cats", owner="lou")
            lou = await find_local(session, "lou")
            assert lou is not None
            published = await post_to_group(session, fedi.services.urls, lou, group, "Hi all")
            invite = await create_invite(session, group, lou)
        token = invite.token
        pages = ["/", "/groups/cats", published.post.uri.removeprefix(fedi.settings.base_url),
                 f"/groups/cats/invite/{token}"]
        for page in pages:
            shown = await fedi.http.get(page, headers={"Accept": "text/html"})
            assert shown.status_code == 200, (page, shown.status_code)
            assert 'href="/settings">lou</a>' in shown.text, page
        async with browser(fedi) as anonymous:
            for page in pages:
                shown = await anonymous.get(page, headers={"Accept": "text/html"})
                assert 'href="/login">Log in</a>' in shown.text, page
                assert "lou</a>" not in shown.text.split("</nav>")[0], page
