"""Live events wait for the outermost commit: the inbox processor runs each item of a batch in
a savepoint, and SQLAlchemy sends commit and rollback events for savepoints too. Announced
at the savepoint, a post reached the browser before it was committed, whose fragment request
then found nothing (the browser journey's live remote reply, lost on SQLite)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from fedi.live.events import PostEvent
from fedi.live.hub import Hub, Subscription
from fedi.live.source import attach, post_stored


@dataclass
class StoredPost:  # what post_stored reads of a Post
    id: int
    thread_id: int = 1
    group_id: int = 1
    held: str | None = None
    deleted_at: float | None = None


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession],
                                                        Subscription]]:
    # SQLite, where events go to the hub after the commit (PostgreSQL's pg_notify is
    # transactional by itself).
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'live.db'}")
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    hub = Hub(max_subscribers=4)
    attach(sessionmaker, hub)
    subscription = hub.subscribe()
    assert subscription is not None
    async with sessionmaker() as session, session.begin():
        await session.execute(text("CREATE TABLE t (x INTEGER)"))
    yield sessionmaker, subscription
    await engine.dispose()


async def _drain(subscription: Subscription) -> list[int]:
    got: list[int] = []
    while (event := await subscription.next(0.05)) is not None:
        assert isinstance(event, PostEvent)
        got.append(event.post_id)
    return got


async def test_a_savepoint_commit_announces_nothing_until_the_transaction_commits(
    world: tuple[async_sessionmaker[AsyncSession], Subscription],
) -> None:
    sessionmaker, subscription = world
    async with sessionmaker() as session, session.begin():
        async with session.begin_nested():
            await session.execute(text("INSERT INTO t VALUES (1)"))
            post_stored(session, StoredPost(id=7))
        assert await _drain(subscription) == []  # released, but not committed
    assert await _drain(subscription) == [7]


async def test_a_rolled_back_savepoint_keeps_the_events_of_the_items_before_it(
    world: tuple[async_sessionmaker[AsyncSession], Subscription],
) -> None:
    sessionmaker, subscription = world
    async with sessionmaker() as session, session.begin():
        async with session.begin_nested():
            post_stored(session, StoredPost(id=1))
        with contextlib.suppress(RuntimeError):
            async with session.begin_nested():
                raise RuntimeError("this item fails")
        async with session.begin_nested():
            post_stored(session, StoredPost(id=3))
    assert await _drain(subscription) == [1, 3]


async def test_a_rolled_back_transaction_announces_nothing(
    world: tuple[async_sessionmaker[AsyncSession], Subscription],
) -> None:
    sessionmaker, subscription = world
    with contextlib.suppress(RuntimeError):
        async with sessionmaker() as session, session.begin():
            async with session.begin_nested():
                post_stored(session, StoredPost(id=9))
            raise RuntimeError("the batch fails")
    assert await _drain(subscription) == []
