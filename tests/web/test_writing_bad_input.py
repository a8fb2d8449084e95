"""Bad input on the writing forms (issue 8 item 8): each gets a clear message on the page,
keeps what was typed where that makes sense, and writes nothing (no post, no activity, no
delivery)."""

from __future__ import annotations

import httpx
from sqlalchemy import select, update

from fedi.groups import moderation
from fedi.groups.membership import join_local_group
from fedi.groups.posting import MAX_TEXT
from fedi.store.models import Post, WebSession
from tests.accounts.support import app, token_in
from tests.support.app import InProcess
from tests.web.writing_support import actor, make_group, nonce_in, person, written


async def _fields(http: httpx.AsyncClient, page: str, **fields: str) -> dict[str, str]:
    form = await http.get(page)
    assert form.status_code == 200, form.text
    return {"csrf": token_in(form), "nonce": nonce_in(form), "action": "post", **fields}


async def _member(fedi: InProcess, name: str, group: str) -> None:
    async with fedi.services.sessionmaker() as session, session.begin():
        await join_local_group(session, fedi.services.urls, await actor(fedi, group),
                               await session.merge(await actor(fedi, name)))


async def test_empty_and_over_long_posts_are_refused_and_kept(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann:
        await make_group(fedi, "cats", "ann")
        before = await written(fedi)
        empty = await ann.post("/groups/cats/new", data=await _fields(
            ann, "/groups/cats/new", title="Hello", body="   \n "))
        assert empty.status_code == 400 and "the post is empty" in empty.text
        assert 'value="Hello"' in empty.text  # the title typed is still there
        long_text = "purr " * (MAX_TEXT // 5) + "!"
        too_long = await ann.post("/groups/cats/new", data=await _fields(
            ann, "/groups/cats/new", title="Long", body=long_text))
        assert too_long.status_code == 400
        assert f"the limit is {MAX_TEXT}" in too_long.text
        assert long_text in too_long.text  # kept, to be shortened rather than retyped
        long_title = await ann.post("/groups/cats/new", data=await _fields(
            ann, "/groups/cats/new", title="t" * 400, body="fine"))
        assert long_title.status_code == 400 and "the title is" in long_title.text
        assert await written(fedi) == before


async def test_forged_csrf_and_forged_form_id_change_nothing(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann:
        await make_group(fedi, "cats", "ann")
        fields = await _fields(ann, "/groups/cats/new", title="Hi", body="hello")
        before = await written(fedi)
        forged = await ann.post("/groups/cats/new", data={**fields, "csrf": "f" * 64})
        assert forged.status_code == 403 and "Nothing was changed" in forged.text
        missing = await ann.post("/groups/cats/new",
                                 data={k: v for k, v in fields.items() if k != "csrf"})
        assert missing.status_code == 403 and "no security token" in missing.text
        # A one-time id not made by this site for this session: refused, text kept.
        made_up = await ann.post("/groups/cats/new",
                                 data={**fields, "nonce": "0" * 27 + "." + "0" * 32})
        assert made_up.status_code == 400 and "nothing was posted" in made_up.text
        assert "hello" in made_up.text
        # Another site's page cannot post through the signed-in browser.
        cross = await ann.post("/groups/cats/new", data=fields,
                               headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        assert await written(fedi) == before


async def test_an_expired_session_posts_nothing(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann:
        await make_group(fedi, "cats", "ann")
        fields = await _fields(ann, "/groups/cats/new", title="Hi", body="hello")
        async with fedi.services.sessionmaker() as session, session.begin():
            await session.execute(update(WebSession).values(expires_at=1.0))
        before = await written(fedi)
        late = await ann.post("/groups/cats/new", data=fields)
        assert late.status_code == 303
        assert late.headers["location"].startswith("/login?next=/groups/cats/new&m=expired")
        assert "expired" in (await ann.get(late.headers["location"])).text
        assert await written(fedi) == before


async def test_banned_people_and_locked_threads_are_refused(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob:
        group = await make_group(fedi, "cats", "ann")
        await _member(fedi, "bob", "cats")
        first = await ann.post("/groups/cats/new", data=await _fields(
            ann, "/groups/cats/new", title="Naps", body="Where?"))
        assert first.status_code == 303
        async with fedi.services.sessionmaker() as session:
            thread = (await session.execute(
                select(Post).where(Post.uri == first.headers["location"]))).scalar_one()
        # Bob's reply form is on his screen when the thread is locked.
        reply_form = await _fields(bob, f"/posts/{thread.id}/reply", body="On the sofa")
        async with fedi.services.sessionmaker() as session, session.begin():
            await moderation.set_locked(session, fedi.services.urls, group, thread.uri,
                                        locked=True)
        before = await written(fedi)
        locked = await bob.post(f"/posts/{thread.id}/reply", data=reply_form)
        assert locked.status_code == 400 and "the thread is locked" in locked.text
        assert "On the sofa" in locked.text
        assert await written(fedi) == before

        # Bob's new-thread form is open when he is banned.
        new_form = await _fields(bob, "/groups/cats/new", title="Spam", body="buy now")
        async with fedi.services.sessionmaker() as session, session.begin():
            await moderation.ban(session, fedi.services.urls, group,
                                 await session.merge(await actor(fedi, "bob")), by=None,
                                 reason="spam")
        before = await written(fedi)
        banned = await bob.post("/groups/cats/new", data=new_form)
        assert banned.status_code == 400 and "banned from the group" in banned.text
        assert "buy now" in banned.text
        assert await written(fedi) == before
