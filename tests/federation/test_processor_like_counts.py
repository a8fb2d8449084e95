"""A batch's like counts are written when it ends, once per post, and still count right.

Every processed Like changed its post's count with an UPDATE of its own; in a batch the
changes are summed per post (fedi.groups.likes). Votes replaced, undone, and a batch run
again after a failed item must all leave the count each Like alone would have.
"""

from __future__ import annotations

from sqlalchemy import delete, event, select

from fedi.activitypub.parse import IncomingActivity
from fedi.handlers import HandlerContext
from fedi.services import Services
from fedi.store.models import Host, InboxItem, Post, Reaction
from tests.federation.test_processor_memo import (
    THREAD,
    group_with_members,
    like,
    member,
    processor,
    statements_sent,
    states,
    store,
)


async def like_count(services: Services) -> int:
    async with services.sessionmaker() as session:
        return (await session.execute(
            select(Post.like_count).where(Post.uri == THREAD))).scalar_one()


async def test_a_batch_writes_a_posts_like_count_once_and_right(services: Services) -> None:
    await group_with_members(services, 4)
    await store(
        services, like(1, "a"), like(2, "b"), like(3, "c"),
        # Member 1's vote becomes a Dislike (Lemmy sends no Undo), member 2 takes theirs back.
        {"id": f"{member(1)}/dislikes/a", "type": "Dislike", "actor": member(1),
         "object": THREAD},
        {"id": f"{member(2)}/undo/b", "type": "Undo", "actor": member(2),
         "object": like(2, "b")},
    )
    updates = statements_sent(services, "UPDATE posts", "like_count")
    assert await processor(services, {}).run_once() == 5
    assert {state for state, _ in (await states(services)).values()} == {"done"}
    assert await like_count(services) == 1  # member 3's alone
    assert len(updates) == 1, updates


async def test_likes_before_a_failed_item_are_counted_once(services: Services) -> None:
    """An item that fails after a write makes the batch run again with savepoints: the
    counts of the first run went with its transaction."""
    await group_with_members(services, 3)

    async def writes_then_fails(context: HandlerContext, activity: IncomingActivity) -> None:
        context.session.add(Host(host="boom.example", failures=0, down_until=0.0, gone=False))
        await context.session.flush()
        raise KeyError("after a write")

    boom = {"id": f"{member(1)}/boom", "type": "Boom", "actor": member(1), "object": THREAD}
    await store(services, like(1, "a"), like(2, "b"), boom, like(3, "c"))
    assert await processor(services, {"Boom": writes_then_fails}).run_once() == 4
    assert (await states(services))[str(boom["id"])][0] == "failed"
    assert await like_count(services) == 3


async def test_a_batch_looks_a_post_up_once_until_posts_are_written(
    services: Services,
) -> None:
    """Likes of one thread find it with one query; a Like of a post that did not exist yet
    is ignored, and once a Create of it is stored, the next Like of it counts."""
    group = await group_with_members(services, 3)
    new = "https://m1.example/notes/new"
    lookups: list[str] = []  # the uri each find_post query asked for

    def saw(_c: object, _cursor: object, statement: str, parameters: object,
            *_rest: object) -> None:
        if statement.startswith("SELECT") and "posts.copy_uri = " in statement:
            lookups.append(str(parameters))

    def like_of(n: int, name: str, uri: str) -> dict[str, object]:
        return {"id": f"{member(n)}/likes/{name}", "type": "Like", "actor": member(n),
                "object": uri}

    await store(
        services, like(1, "a"), like(2, "b"), like(3, "c"), like_of(2, "early", new),
        {"id": f"{new}/create", "type": "Create", "actor": member(1),
         "to": ["https://www.w3.org/ns/activitystreams#Public"], "cc": [group],
         "object": {"id": new, "type": "Page", "attributedTo": member(1), "name": "N",
                    "content": "<p>new</p>", "cc": [group], "audience": group,
                    "to": ["https://www.w3.org/ns/activitystreams#Public"]}},
        like_of(2, "late", new))
    event.listen(services.engine.sync_engine, "before_cursor_execute", saw)
    assert await processor(services, {}).run_once() == 6
    found = await states(services)
    assert found[f"{member(2)}/likes/early"][0] == "done"
    assert found[f"{member(2)}/likes/late"] == ("done", None)
    assert await like_count(services) == 3
    async with services.sessionmaker() as session:
        assert (await session.execute(
            select(Post.like_count).where(Post.uri == new))).scalar_one() == 1
    # THREAD once for its three Likes.
    assert len([asked for asked in lookups if THREAD in asked]) == 1, lookups


async def reactions(services: Services) -> list[tuple[str, str]]:
    """(activity id, type) of every stored reaction."""
    async with services.sessionmaker() as session:
        rows = await session.execute(select(Reaction.activity_uri, Reaction.type))
        return sorted((uri, kind) for uri, kind in rows.all())


async def test_a_batch_stores_its_reactions_in_one_insert(services: Services) -> None:
    await group_with_members(services, 4)
    likes = [like(1, "a"), like(2, "b"), like(3, "c"), like(4, "d")]
    await store(services, *likes)
    inserts = statements_sent(services, "INSERT INTO reactions")
    assert await processor(services, {}).run_once() == 4
    assert await reactions(services) == [(str(x["id"]), "Like") for x in likes]
    assert await like_count(services) == 4
    assert len(inserts) == 1, inserts


async def test_a_vote_waiting_in_the_batch_is_replaced_and_undone_like_a_stored_one(
    services: Services,
) -> None:
    """A Dislike replaces the same person's Like of the batch, an Undo takes back a Like of
    the batch, and a Like of the batch arriving again is counted once: each finds the vote
    that waits to be written as it would find a stored one."""
    await group_with_members(services, 3)
    await store(
        services, like(1, "a"), like(2, "b"), like(3, "c"),
        {"id": f"{member(1)}/dislikes/a", "type": "Dislike", "actor": member(1),
         "object": THREAD},
        {"id": f"{member(2)}/undo/b", "type": "Undo", "actor": member(2),
         "object": like(2, "b")},
        # Member 3's Like again under another id (Lemmy sends a vote again when it changes).
        {"id": f"{member(3)}/likes/again", "type": "Like", "actor": member(3),
         "object": THREAD},
    )
    assert await processor(services, {}).run_once() == 6
    assert {state for state, _ in (await states(services)).values()} == {"done"}
    assert await reactions(services) == sorted([
        (f"{member(1)}/dislikes/a", "Dislike"), (f"{member(3)}/likes/again", "Like")])
    assert await like_count(services) == 1


async def test_a_batch_asks_for_earlier_votes_once_per_post_and_finds_stored_ones(
    services: Services,
) -> None:
    """Votes stored by an earlier batch are replaced, and a vote counted already (received
    again after its inbox row was pruned) is not counted twice, by a batch that asks for
    the earlier votes of all of its votes on a post at once."""
    await group_with_members(services, 4)
    await store(services, like(1, "a"), like(2, "b"))
    assert await processor(services, {}).run_once() == 2
    async with services.sessionmaker() as session, session.begin():
        await session.execute(delete(InboxItem).where(
            InboxItem.activity_uri == str(like(2, "b")["id"])))
    await store(
        services, like(3, "c"), like(4, "d"),
        {"id": f"{member(1)}/dislikes/a", "type": "Dislike", "actor": member(1),
         "object": THREAD},
        like(2, "b"))  # again
    asked = statements_sent(services, "SELECT reactions.")
    assert await processor(services, {}).run_once() == 4
    batch_queries = len(asked)
    found = await states(services)
    assert found[str(like(2, "b")["id"])] == ("done", "reaction already counted")
    assert await reactions(services) == sorted([
        (f"{member(1)}/dislikes/a", "Dislike"), (str(like(2, "b")["id"]), "Like"),
        (str(like(3, "c")["id"]), "Like"), (str(like(4, "d")["id"]), "Like")])
    assert await like_count(services) == 3
    # Asked for the first vote; the next two found their answer in it; the Dislike's
    # DELETE of the Like it replaces dropped it, so the last vote asked again.
    assert batch_queries == 2, asked
