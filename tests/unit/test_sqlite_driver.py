"""fedi's SQLite engine makes one call on aiosqlite's thread per statement, and SQLAlchemy
sees the same results, counts, ids and errors as through its own adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.config import Settings
from fedi.store.db import make_engine
from fedi.store.sqlite_driver import OneCallConnection


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = make_engine(Settings(base_url="http://fedi.test",
                                database_url=f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"))
    async with made.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    yield made
    await made.dispose()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each call on aiosqlite's thread was (the function's name)."""
    seen: list[str] = []
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return seen


async def test_each_statement_is_one_call_on_the_connection_thread(
    engine: AsyncEngine, calls: list[str]
) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.dbapi_connection, OneCallConnection)
        calls.clear()
        await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        assert (await conn.execute(text("SELECT name FROM t"))).all() == [("a",)]
        assert calls == ["_run", "_run"]  # SQLAlchemy's own adapter: 7 (cursor, execute,
        await conn.rollback()              # fetchall, close; cursor, execute, close)


async def test_rows_counts_ids_and_returning_are_as_sqlalchemy_expects(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        inserted = await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        assert inserted.lastrowid == 1 and inserted.rowcount == 1
        many = await conn.execute(text("INSERT INTO t (name) VALUES (:n)"),
                                  [{"n": "b"}, {"n": "c"}, {"n": "d"}])
        assert many.rowcount == 3
        returned = await conn.execute(text("INSERT INTO t (name) VALUES ('e') RETURNING id"))
        assert returned.scalar_one() == 5
        changed = await conn.execute(text("UPDATE t SET name = name || '!' WHERE id > 2"))
        assert changed.rowcount == 3
        found = await conn.execute(text("SELECT id, name FROM t ORDER BY id"))
        assert list(found.keys()) == ["id", "name"]
        assert found.all() == [(1, "a"), (2, "b"), (3, "c!"), (4, "d!"), (5, "e!")]
        nothing = await conn.execute(text("SELECT id FROM t WHERE id > 99"))
        assert nothing.all() == [] and list(nothing.keys()) == ["id"]
        streamed = await conn.stream(text("SELECT id FROM t ORDER BY id"))
        assert [row.id async for row in streamed] == [1, 2, 3, 4, 5]


async def test_errors_are_sqlalchemys_and_a_savepoint_rolls_back_alone(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        savepoint = await conn.begin_nested()
        await conn.execute(text("INSERT INTO t (name) VALUES ('b')"))
        with pytest.raises(IntegrityError):
            await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        await savepoint.rollback()
        await conn.execute(text("INSERT INTO t (name) VALUES ('c')"))
    async with engine.connect() as conn:
        names = (await conn.execute(text("SELECT name FROM t ORDER BY name"))).scalars().all()
    assert names == ["a", "c"]
