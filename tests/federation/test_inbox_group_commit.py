"""The inbox's group commit (fedi.federation.inbox_store): concurrent requests' rows share one
transaction, each caller learns its own row's outcome, a failed transaction stores nothing and
refuses every caller in it, and the waiting is bounded. Through the app: a batch whose commit
fails answers 503 with Retry-After to every request in it and no 202 is ever lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, func, make_url, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.actors.local import create_group, create_user
from fedi.config import Settings
from fedi.federation.inbox_store import GroupCommit, StoreBusy
from fedi.store.db import make_engine
from fedi.store.migrate import migrate
from fedi.store.models import InboxItem, now
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote

GROUP = f"{BASE_URL}/groups/cats"
INBOX = f"{BASE_URL}/inbox"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(Settings(base_url=BASE_URL, database_url=database_url))
    await migrate(made)
    yield made
    await made.dispose()


def statement(engine: AsyncEngine) -> Any:
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    return insert(InboxItem).on_conflict_do_nothing(index_elements=["activity_uri"])


def row(uri: str, actor: str | None = "https://remote.example/users/a") -> dict[str, Any]:
    return {"activity_uri": uri, "actor_uri": actor, "recipient": None, "body": "{}",
            "state": "new", "attempts": 0, "claimed_until": 0.0, "received_at": now()}


async def stored(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(InboxItem.activity_uri))).scalars())


def count_batches(store: GroupCommit) -> list[int]:
    """The rows of each batch the store writes (a batch is one transaction)."""
    batches: list[int] = []
    write = store._writer.write

    async def counted(rows: list[dict[str, Any]]) -> None:
        batches.append(len(rows))
        await write(rows)

    store._writer.write = counted  # type: ignore[method-assign]
    return batches


async def test_on_postgresql_batches_keep_one_connection_and_send_no_begin_or_commit(
    engine: AsyncEngine,
) -> None:
    """PostgreSQL: one pipelined, atomic executemany per batch on a connection the store
    keeps (no pool checkout, BEGIN or COMMIT per batch). SQLite: a transaction per batch."""
    store = GroupCommit(engine, statement(engine))
    checkouts: list[int] = []
    event.listen(engine.sync_engine.pool, "checkout", lambda *_args: checkouts.append(1))
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: commits.append(1))
    uris = [f"https://remote.example/a/{i}" for i in range(3)]
    for uri in uris:  # one after the other: three batches
        await store.insert(row(uri))
    if engine.dialect.name == "postgresql":
        assert (len(checkouts), len(commits)) == (1, 0)
    else:
        assert (len(checkouts), len(commits)) == (3, 3)
    assert await stored(engine) == set(uris)
    await store.close()


async def test_a_lost_connection_is_replaced_and_the_batch_stored_once(
    engine: AsyncEngine, database_url: str,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server connection to lose")
    store = GroupCommit(engine, statement(engine))
    await store.insert(row("https://remote.example/before"))
    # The server ends every other session of this test's database: the store's held one too.
    killer = await asyncpg.connect(make_url(database_url).set(drivername="postgresql")
                                   .render_as_string(hide_password=False))
    try:
        ended = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    finally:
        await killer.close()
    assert ended >= 1
    results = await asyncio.gather(*(outcome(store, row(f"https://remote.example/b/{i}"))
                                     for i in range(5)))
    assert results == ["stored"] * 5
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(InboxItem))).scalar()
    assert total == 6
    await store.close()


async def outcome(store: GroupCommit, values: dict[str, Any]) -> str:
    try:
        await store.insert(values)
    except StoreBusy:
        return "refused"
    return "stored"


async def test_concurrent_rows_share_a_transaction(engine: AsyncEngine) -> None:
    store = GroupCommit(engine, statement(engine))
    batches = count_batches(store)
    uris = [f"https://remote.example/a/{i}" for i in range(50)]
    results = await asyncio.gather(*(outcome(store, row(uri)) for uri in uris))
    assert results == ["stored"] * 50
    assert await stored(engine) == set(uris)
    assert sum(batches) == 50
    assert len(batches) < 5, "concurrent rows were written one by one"
    await store.close()


async def test_batches_are_bounded(engine: AsyncEngine) -> None:
    store = GroupCommit(engine, statement(engine), max_batch=4)
    batches = count_batches(store)
    uris = [f"https://remote.example/a/{i}" for i in range(10)]
    await asyncio.gather(*(store.insert(row(uri)) for uri in uris))
    assert await stored(engine) == set(uris)
    assert batches == [4, 4, 2]
    await store.close()


async def test_a_failed_transaction_stores_nothing_and_refuses_everyone_in_it(
    engine: AsyncEngine,
) -> None:
    store = GroupCommit(engine, statement(engine))
    good = [f"https://remote.example/a/{i}" for i in range(9)]
    # actor_uri is NOT NULL: this one row makes its whole transaction fail.
    rows = [row(uri) for uri in good] + [row("https://remote.example/bad", actor=None)]
    results = await asyncio.gather(*(outcome(store, values) for values in rows))
    assert results == ["refused"] * 10
    assert await stored(engine) == set()
    # The store goes on: the next rows are committed.
    await store.insert(row("https://remote.example/after"))
    assert await stored(engine) == {"https://remote.example/after"}
    await store.close()


async def test_past_max_pending_a_row_is_refused_at_once(engine: AsyncEngine) -> None:
    store = GroupCommit(engine, statement(engine), max_pending=3)
    uris = [f"https://remote.example/a/{i}" for i in range(5)]
    results = await asyncio.gather(*(outcome(store, row(uri)) for uri in uris))
    assert results == ["stored"] * 3 + ["refused"] * 2
    assert await stored(engine) == set(uris[:3])
    await store.close()


class HeldEngine:
    """An engine whose transactions wait until released, recording what they committed."""

    dialect = SimpleNamespace(name="sqlite")  # the store's explicit-transaction path

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.committed: list[list[str]] = []
        self.started = asyncio.Event()

    def begin(self) -> HeldEngine:
        return self

    async def __aenter__(self) -> HeldEngine:
        self.started.set()
        await self.release.wait()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def execute(self, _statement: object, rows: list[dict[str, Any]]) -> None:
        self.committed.append([values["activity_uri"] for values in rows])


async def test_a_row_waiting_too_long_is_withdrawn_and_never_stored() -> None:
    held = HeldEngine()
    store = GroupCommit(held, None, max_wait=0.2)  # type: ignore[arg-type]
    first = asyncio.create_task(outcome(store, row("first")))
    await held.started.wait()  # "first" is in a transaction that does not end yet
    assert await outcome(store, row("second")) == "refused"
    held.release.set()
    # The row in the transaction waited for its outcome past max_wait: it was stored.
    assert await first == "stored"
    await store.close()
    assert held.committed == [["first"]]
    assert store.waiting == 0


# -- through the app -------------------------------------------------------------------------
@pytest.fixture
async def remote() -> AsyncIterator[FakeRemote]:
    server = FakeRemote()
    server.add_actor("alice", key_index=0)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[InProcess]:
    async with running_app(database_url) as running:
        async with running.services.sessionmaker() as session, session.begin():
            await create_user(session, running.services.urls, "owner")
            await create_group(session, running.services.urls, "cats", owner="owner")
        yield running


POISON = "poison"


async def poison_inserts(engine: AsyncEngine) -> None:
    """A trigger that makes any transaction inserting a row whose id contains POISON fail."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.activity_uri LIKE '%{POISON}%' THEN RAISE EXCEPTION 'poisoned'; "
                "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
            await conn.execute(text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON inbox_items "
                "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"))
        else:
            await conn.execute(text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON inbox_items "
                f"WHEN NEW.activity_uri LIKE '%{POISON}%' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned'); END"))


def create(remote: FakeRemote, token: str) -> dict[str, Any]:
    actor = remote.actors["alice"].uri
    return {"@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{remote.base_url}/activities/{token}", "type": "Create", "actor": actor,
            "to": [GROUP], "object": {"id": f"{remote.base_url}/notes/{token}", "type": "Note",
                                      "attributedTo": actor, "to": [GROUP],
                                      "content": "<p>hi</p>"}}


async def test_a_failed_batch_answers_503_to_each_request_and_no_202_is_lost(
    fedi: InProcess, remote: FakeRemote,
) -> None:
    engine = fedi.services.engine
    await poison_inserts(engine)
    tokens = [f"ok-{i}" for i in range(20)] + [POISON]
    signed = []
    for token in tokens:
        body = json.dumps(create(remote, token)).encode()
        signed.append((token, body, remote.signed(remote.actors["alice"], INBOX, body)))
    # The actor's key is fetched once first, so that the batch's requests arrive together.
    first = create(remote, "warm")
    body = json.dumps(first).encode()
    warm = await fedi.http.post(INBOX, content=body,
                                headers=remote.signed(remote.actors["alice"], INBOX, body))
    assert warm.status_code == 202

    responses = await asyncio.gather(*(
        fedi.http.post(INBOX, content=body, headers=headers) for _, body, headers in signed))
    answers = dict(zip(tokens, responses, strict=True))
    assert answers[POISON].status_code == 503
    for response in responses:
        assert response.status_code in (202, 503), response.text
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) > 0
            assert response.json()["error"]
    async with fedi.services.sessionmaker() as session:
        rows = set((await session.execute(select(InboxItem.activity_uri))).scalars())
        total = (await session.execute(select(func.count()).select_from(InboxItem))).scalar()
    accepted = {f"{remote.base_url}/activities/{t}" for t, r in answers.items()
                if r.status_code == 202}
    assert rows == accepted | {first["id"]}, "a 202 without its row, or a 503 that was stored"
    assert total == len(rows)
    refused = [t for t, r in answers.items() if r.status_code == 503]
    assert len(refused) > 1, "the poisoned row's batch carried no other request"
