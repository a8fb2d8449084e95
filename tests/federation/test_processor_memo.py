"""The inbox batch's read memo (fedi.store.memo) never answers with what the batch changed.

A batch reads a group's roster and members once for all its items; an item that bans,
admits or rolls back must be seen by the items after it, exactly as if each item ran alone.
"""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import delete, event, insert, select

from fedi.activitypub.parse import IncomingActivity
from fedi.actors.local import create_group, create_user
from fedi.federation.dispatch import HANDLERS
from fedi.federation.processor import InboxProcessor
from fedi.groups.relay import members
from fedi.handlers import Handler, HandlerContext
from fedi.services import Services
from fedi.store.models import (
    Actor,
    Delivery,
    Follow,
    GroupBan,
    Host,
    InboxItem,
    OutboundActivity,
    Reaction,
)

THREAD = "https://m0.example/notes/thread"


def member(n: int) -> str:
    return f"https://m{n}.example/users/p{n}"


async def group_with_members(services: Services, count: int) -> str:
    """A group whose `count` members are each on their own threaded server (which gets
    every Like relayed); member 0 has started THREAD in it."""
    async with services.sessionmaker() as session, session.begin():
        await create_user(session, services.urls, "owner")
        group = await create_group(session, services.urls, "g", owner="owner")
        people = []
        for n in range(count + 1):  # the last one is not a member yet
            session.add(Host(host=f"m{n}.example", software="lemmy",
                             software_checked_at=time.time(), failures=0, down_until=0.0,
                             gone=False))
            people.append(Actor(uri=member(n), type="Person", username=f"p{n}",
                                domain=f"m{n}.example", inbox=f"{member(n)}/inbox",
                                shared_inbox=f"https://m{n}.example/inbox",
                                public_key_pem="unused", key_id=f"{member(n)}#key"))
        session.add_all(people)
        await session.flush()
        session.add_all(Follow(follower_id=p.id, target_id=group.id, state="accepted")
                        for p in people[:count])
        group_uri = group.uri
    await store(services, {
        "id": f"{THREAD}/create", "type": "Create", "actor": member(0),
        "to": ["https://www.w3.org/ns/activitystreams#Public"], "cc": [group_uri],
        "object": {"id": THREAD, "type": "Page", "attributedTo": member(0), "name": "T",
                   "content": "<p>hi</p>", "to": ["https://www.w3.org/ns/activitystreams#Public"],
                   "cc": [group_uri], "audience": group_uri},
    })
    assert await processor(services, {}).run_once() == 1
    return group_uri


async def store(services: Services, *bodies: dict[str, object]) -> None:
    rows = [{"activity_uri": body["id"], "actor_uri": body["actor"], "recipient": None,
             "body": json.dumps(body), "state": "new", "attempts": 0, "claimed_until": 0.0,
             "received_at": time.time()} for body in bodies]
    async with services.sessionmaker() as session, session.begin():
        await session.execute(insert(InboxItem), rows)


def like(n: int, name: str) -> dict[str, object]:
    return {"id": f"{member(n)}/likes/{name}", "type": "Like", "actor": member(n),
            "object": THREAD}


def processor(services: Services, extra: dict[str, Handler]) -> InboxProcessor:
    return InboxProcessor(services.sessionmaker, services.resolver, services.urls,
                          {**HANDLERS, **extra})


async def relayed_to(services: Services, like_id: str) -> set[str]:
    """The inboxes the group's Announce of this Like was enqueued for."""
    async with services.sessionmaker() as session:
        rows = await session.execute(
            select(Delivery.inbox_url, OutboundActivity.body)
            .join(OutboundActivity, OutboundActivity.id == Delivery.activity_id))
        return {inbox for inbox, body in rows.all()
                if json.loads(body).get("object", {}).get("id") == like_id}


def statements_sent(services: Services, start: str, containing: str = "") -> list[str]:
    """The statements beginning with `start` (and holding `containing`) sent from now on."""
    seen: list[str] = []

    def saw(_c: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.startswith(start) and containing in statement:
            seen.append(statement)

    event.listen(services.engine.sync_engine, "before_cursor_execute", saw)
    return seen


async def states(services: Services) -> dict[str, tuple[str, str | None]]:
    async with services.sessionmaker() as session:
        rows = await session.execute(
            select(InboxItem.activity_uri, InboxItem.state, InboxItem.error))
        return {uri: (state, error) for uri, state, error in rows.all()}


@pytest.mark.parametrize("how", ["orm", "statement"])
async def test_a_member_banned_by_an_earlier_item_gets_nothing_from_later_ones(
    services: Services, how: str
) -> None:
    await group_with_members(services, 3)

    async def ban(context: HandlerContext, activity: IncomingActivity) -> None:
        group = (await context.session.execute(
            select(Actor).where(Actor.type == "Group"))).scalar_one()
        banned = (await context.session.execute(
            select(Actor).where(Actor.uri == member(2)))).scalar_one()
        # What a ban does (groups.moderation): the ban, and the member's Follow gone.
        if how == "orm":
            context.session.add(GroupBan(group_id=group.id, actor_id=banned.id))
            follow = (await context.session.execute(
                select(Follow).where(Follow.follower_id == banned.id))).scalar_one()
            await context.session.delete(follow)
        else:
            await context.session.execute(
                insert(GroupBan).values(group_id=group.id, actor_id=banned.id))
            await context.session.execute(delete(Follow).where(Follow.follower_id == banned.id))

    first, later = like(1, "first"), like(1, "later")
    await store(services, first, {"id": f"{member(0)}/ban", "type": "Ban",
                                  "actor": member(0), "object": member(2)},
                later, like(2, "banned"))
    assert await processor(services, {"Ban": ban}).run_once() == 4

    assert await relayed_to(services, str(first["id"])) == {
        "https://m0.example/inbox", "https://m2.example/inbox"}
    # The relay of the later Like, in the same batch, leaves the banned member out ...
    assert await relayed_to(services, str(later["id"])) == {"https://m0.example/inbox"}
    # ... and the banned member's own Like is refused.
    assert (await states(services))[f"{member(2)}/likes/banned"] == (
        "done", "banned from the group")


async def test_what_a_rolled_back_item_read_is_forgotten(services: Services) -> None:
    await group_with_members(services, 2)

    async def join_then_fail(context: HandlerContext, activity: IncomingActivity) -> None:
        group = (await context.session.execute(
            select(Actor).where(Actor.type == "Group"))).scalar_one()
        newcomer = (await context.session.execute(
            select(Actor).where(Actor.uri == member(2)))).scalar_one()
        context.session.add(Follow(follower_id=newcomer.id, target_id=group.id,
                                   state="accepted"))
        # Read inside the item, with the Follow in it: the memo now holds it.
        assert member(2) in {m.recipient.uri for m in await members(context.session, group, None)}
        raise KeyError("after reading the members")

    after = like(1, "after")
    await store(services, like(1, "before"),
                {"id": f"{member(2)}/join", "type": "Join", "actor": member(2),
                 "object": member(0)},
                after)
    assert await processor(services, {"Join": join_then_fail}).run_once() == 3

    assert (await states(services))[f"{member(2)}/join"][0] == "failed"
    # The Follow rolled back with its item: the next item's relay does not reach them.
    assert await relayed_to(services, str(after["id"])) == {"https://m0.example/inbox"}
    async with services.sessionmaker() as session:
        assert (await session.execute(select(Reaction.activity_uri))).scalars().all() == [
            after["id"]]  # one vote per person: the later Like replaced the first
