"""Like (a toggle), dislike where the group allows it, and reports that reach the group's
moderators' queue (the one `fedi mod reports` reads)."""

from __future__ import annotations

import json

from sqlalchemy import select, update

from fedi.groups.membership import join_local_group
from fedi.moderation.reports import list_reports
from fedi.store.models import Group, OutboundActivity, Post, Reaction
from tests.accounts.support import app, token_in
from tests.web.writing_support import actor, make_group, nonce_in, person, written


async def _thread(fedi, http) -> Post:  # type: ignore[no-untyped-def]
    form = await http.get("/groups/cats/new")
    done = await http.post("/groups/cats/new", data={
        "csrf": token_in(form), "nonce": nonce_in(form), "title": "Naps", "body": "Where?",
        "action": "post"})
    assert done.status_code == 303
    async with fedi.services.sessionmaker() as session:
        return (await session.execute(
            select(Post).where(Post.uri == done.headers["location"]))).scalar_one()


async def test_like_toggles_and_dislike_needs_the_group_to_allow_it(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob:
        group = await make_group(fedi, "cats", "ann")
        async with fedi.services.sessionmaker() as session, session.begin():
            await join_local_group(session, fedi.services.urls, group,
                                   await session.merge(await actor(fedi, "bob")))
        thread = await _thread(fedi, ann)
        csrf = token_in(await bob.get("/settings"))

        async def state() -> tuple[int, list[str]]:
            async with fedi.services.sessionmaker() as session:
                post = await session.get(Post, thread.id)
                kinds = (await session.execute(
                    select(Reaction.type).where(Reaction.post_id == thread.id))).scalars()
                assert post is not None
                return post.like_count, list(kinds)

        liked = await bob.post(f"/posts/{thread.id}/like",
                               data={"csrf": csrf, "next": "/elsewhere"})
        assert liked.status_code == 303 and liked.headers["location"] == "/elsewhere"
        assert await state() == (1, ["Like"])
        async with fedi.services.sessionmaker() as session:
            sent = [json.loads(a.body) for a in (await session.execute(
                select(OutboundActivity))).scalars()]
        like = next(a for a in sent if a["type"] == "Like")
        assert like["object"] == thread.uri and like["audience"] == group.uri
        # The same button again takes the like back.
        await bob.post(f"/posts/{thread.id}/like", data={"csrf": csrf})
        assert await state() == (0, [])

        before = await written(fedi)
        refused = await bob.post(f"/posts/{thread.id}/dislike", data={"csrf": csrf})
        assert refused.status_code == 400 and "does not take dislikes" in refused.text
        assert await written(fedi) == before
        async with fedi.services.sessionmaker() as session, session.begin():
            await session.execute(update(Group).values(allow_dislikes=True))
        await bob.post(f"/posts/{thread.id}/like", data={"csrf": csrf})
        await bob.post(f"/posts/{thread.id}/dislike", data={"csrf": csrf})
        assert await state() == (0, ["Dislike"])  # one vote per person: it replaced the like
        # Forged CSRF: nothing counted.
        before = await written(fedi)
        forged = await bob.post(f"/posts/{thread.id}/like", data={"csrf": "x" * 64})
        assert forged.status_code == 403
        assert await written(fedi) == before


async def test_a_report_reaches_the_group_moderators_queue(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob:
        group = await make_group(fedi, "cats", "ann")
        thread = await _thread(fedi, ann)
        page = await bob.get(f"/posts/{thread.id}/report")
        assert page.status_code == 200 and "Where?" in page.text
        too_long = await bob.post(f"/posts/{thread.id}/report",
                                  data={"csrf": token_in(page), "comment": "x" * 6000})
        assert too_long.status_code == 400 and "the limit is" in too_long.text
        assert (await written(fedi)).reports == 0
        sent = await bob.post(f"/posts/{thread.id}/report",
                              data={"csrf": token_in(page), "comment": "not about cats"})
        assert sent.status_code == 200 and "Report sent" in sent.text
        async with fedi.services.sessionmaker() as session:
            [view] = await list_reports(session, group_id=group.id)
        assert view.report.comment == "not about cats"
        assert view.reporter is not None and view.reporter.username == "bob"
        assert json.loads(view.report.post_uris) == [thread.uri]
        # A post that does not exist, or is not theirs to see: the same 404.
        assert (await bob.get("/posts/999999/report")).status_code == 404
