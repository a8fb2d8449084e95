"""Joining from the browser, through the one membership flow: open groups at once, approval
groups with answers for the moderators (the queue `fedi mod pending` reads), invite links,
leaving; bans and forged forms change nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from fedi.groups import moderation
from fedi.groups.invites import create_invite
from fedi.store.models import Follow
from tests.accounts.support import app, token_in
from tests.support.app import InProcess
from tests.web.writing_support import actor, make_group, person


async def _state(fedi: InProcess, name: str, group: str) -> str | None:
    who, target = await actor(fedi, name), await actor(fedi, group)
    async with fedi.services.sessionmaker() as session:
        return (await session.execute(select(Follow.state).where(
            Follow.follower_id == who.id, Follow.target_id == target.id))).scalar_one_or_none()


async def _follows(fedi: InProcess) -> int:
    async with fedi.services.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(Follow))
                    ).scalar_one())


async def test_join_and_leave_an_open_group(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob:
        group = await make_group(fedi, "cats", "ann", rules=["Be kind"])
        page = await bob.get("/groups/cats/join")
        assert page.status_code == 200 and "Be kind" in page.text
        forged = await bob.post("/groups/cats/join", data={"csrf": "f" * 64})
        assert forged.status_code == 403 and await _state(fedi, "bob", "cats") is None
        joined = await bob.post("/groups/cats/join", data={"csrf": token_in(page)})
        assert joined.status_code == 303 and joined.headers["location"] == group.uri
        assert await _state(fedi, "bob", "cats") == "accepted"
        # A member can now start a thread.
        assert (await bob.get("/groups/cats/new")).status_code == 200
        left = await bob.post("/groups/cats/leave", data={"csrf": token_in(page)})
        assert left.status_code == 303 and await _state(fedi, "bob", "cats") is None
        again = await bob.post("/groups/cats/leave", data={"csrf": token_in(page)})
        assert again.status_code == 400 and "not in this group" in again.text
        assert (await ann.get("/groups/nothing/join")).status_code == 404


async def test_request_with_answers_waits_for_a_moderator(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann"), person(fedi, "bob") as bob:
        group = await make_group(fedi, "quiet", "ann", join_policy="approval",
                                 questions=["Why do you want to join?", "Favourite cat?"])
        page = await bob.get("/groups/quiet/join")
        assert "Why do you want to join?" in page.text and "Favourite cat?" in page.text
        too_long = await bob.post("/groups/quiet/join", data={
            "csrf": token_in(page), "answer": ["x" * 3000, "y" * 3000]})
        assert too_long.status_code == 400 and "the limit is 4000" in too_long.text
        assert "x" * 3000 in too_long.text  # kept
        assert await _state(fedi, "bob", "quiet") is None
        sent = await bob.post("/groups/quiet/join", data={
            "csrf": token_in(page), "answer": ["I knit jumpers for them", "Tabby"]})
        assert sent.status_code == 200 and "Request sent" in sent.text
        assert await _state(fedi, "bob", "quiet") == "pending"
        async with fedi.services.sessionmaker() as session, session.begin():
            [request] = await moderation.pending(session, group)
            assert request.actor.username == "bob"
            assert request.answers == ("Why do you want to join?\nI knit jumpers for them\n\n"
                                       "Favourite cat?\nTabby")
            await moderation.approve(session, fedi.services.urls, group, request.actor)
        assert await _state(fedi, "bob", "quiet") == "accepted"


async def test_invite_only_groups_take_an_invite_link(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann"), person(fedi, "bob") as bob, \
            person(fedi, "cid") as cid:
        group = await make_group(fedi, "club", "ann", join_policy="invite")
        page = await bob.get("/groups/club/join")
        refused = await bob.post("/groups/club/join",
                                 data={"csrf": token_in(page), "invite": "nope"})
        assert refused.status_code == 400 and "invite-only" in refused.text
        assert await _state(fedi, "bob", "club") is None
        async with fedi.services.sessionmaker() as session, session.begin():
            invite = await create_invite(session, group, None, max_uses=1)
        link = f"/groups/club/invite/{invite.token}"
        shown = await bob.get(link)
        assert shown.status_code == 200 and "Join as bob" in shown.text
        joined = await bob.post(f"{link}/join", data={"csrf": token_in(shown)})
        assert joined.status_code == 303 and await _state(fedi, "bob", "club") == "accepted"
        # Single use: the next person is told, and nothing changes.
        used_up = await cid.get(link)
        assert used_up.status_code == 410 and "no longer valid" in used_up.text
        late = await cid.post(f"{link}/join", data={"csrf": token_in(await cid.get("/settings"))})
        assert late.status_code == 400 and "Nothing was changed" in late.text
        assert await _state(fedi, "cid", "club") is None


async def test_banned_people_cannot_join(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann"), person(fedi, "bob") as bob:
        group = await make_group(fedi, "cats", "ann")
        async with fedi.services.sessionmaker() as session, session.begin():
            await moderation.ban(session, fedi.services.urls, group,
                                 await session.merge(await actor(fedi, "bob")), by=None,
                                 reason="spam")
        page = await bob.get("/groups/cats/join")
        assert "You are banned" in page.text
        before = await _follows(fedi)
        # A form from before the ban (or made by hand) is refused too.
        csrf = token_in(await bob.get("/settings"))
        refused = await bob.post("/groups/cats/join", data={"csrf": csrf})
        assert refused.status_code == 400 and "banned" in refused.text
        assert await _follows(fedi) == before
