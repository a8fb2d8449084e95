"""New posts in an inbox batch, where what each post asked the database on its own (one
round trip per new thread on PostgreSQL) is known or asked once:

- people who asked to hear of an account's new posts (the bell in Mastodon apps) hear of
  the ones the batch stores; who they are is asked once for all of the batch's actors
  (fedi.groups.notices);
- a post just stored names nobody until its named people are stored (fedi.groups.viewers):
  a mentioned post stored after others in the batch still reaches exactly them.
"""

from __future__ import annotations

from sqlalchemy import select

from fedi.actors.local import create_user
from fedi.services import Services
from fedi.store.models import Actor, Delivery, Notification, OutboundActivity, PersonRelation, Post
from tests.federation.test_processor_memo import (
    group_with_members,
    member,
    processor,
    statements_sent,
    states,
    store,
)

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def new_thread(group: str, n: int, name: str) -> dict[str, object]:
    note = f"{member(n)}/notes/{name}"
    return {"id": f"{note}/create", "type": "Create", "actor": member(n), "to": [PUBLIC],
            "cc": [group], "object": {"id": note, "type": "Page", "attributedTo": member(n),
                                      "name": name, "content": f"<p>{name}</p>",
                                      "to": [PUBLIC], "cc": [group], "audience": group}}


async def test_a_batch_tells_whoever_asked_and_asks_once(services: Services) -> None:
    group = await group_with_members(services, 3)
    async with services.sessionmaker() as session, session.begin():
        reader = await create_user(session, services.urls, "reader")
        await session.flush()
        followed = (await session.execute(
            select(Actor).where(Actor.uri == member(1)))).scalar_one()
        session.add(PersonRelation(actor_id=reader.id, target_id=followed.id, kind="notify"))
        reader_id = reader.id
    await store(services, new_thread(group, 1, "one"), new_thread(group, 2, "two"),
                new_thread(group, 1, "three"), new_thread(group, 3, "four"))
    asked = statements_sent(services, "SELECT", "person_relations")
    assert await processor(services, {}).run_once() == 4
    assert {state for state, _ in (await states(services)).values()} == {"done"}
    async with services.sessionmaker() as session:
        told = (await session.execute(
            select(Post.name).join(Notification, Notification.post_id == Post.id)
            .where(Notification.recipient_id == reader_id, Notification.kind == "status")
        )).scalars().all()
    assert sorted(told) == ["one", "three"]
    assert len(asked) == 1, asked


async def test_a_mentioned_post_after_others_in_a_batch_reaches_its_named_people(
    services: Services,
) -> None:
    group = await group_with_members(services, 3)
    note = f"{member(1)}/notes/whisper"
    whisper = {"id": f"{note}/create", "type": "Create", "actor": member(1),
               "to": [member(2)], "object": {
                   "id": note, "type": "Note", "attributedTo": member(1), "content": "<p>psst</p>",
                   "to": [member(2)], "audience": group,
                   "tag": [{"type": "Mention", "href": member(2)}]}}
    await store(services, new_thread(group, 1, "one"), whisper, new_thread(group, 3, "two"))
    assert await processor(services, {}).run_once() == 3
    assert {state for state, _ in (await states(services)).values()} == {"done"}
    async with services.sessionmaker() as session:
        inboxes = (await session.execute(
            select(Delivery.inbox_url).join(OutboundActivity,
                                            OutboundActivity.id == Delivery.activity_id)
            .where(OutboundActivity.body.contains(note)))).scalars().all()
        stored = (await session.execute(select(Post).where(Post.uri == note))).scalar_one()
    assert stored.visibility == "mentioned"
    assert sorted(inboxes) == [f"{member(2)}/inbox"]
