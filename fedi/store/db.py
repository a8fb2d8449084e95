"""Engine and session factory. Only app.py and cli.py call these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from fedi.config import Settings
from fedi.errors import ConfigError


def make_engine(settings: Settings) -> AsyncEngine:
    # SQL parameters never reach an error message or log: rows carry private keys.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if settings.is_sqlite:
        from fedi.store import sqlite_driver  # aiosqlite: loaded on SQLite only

        # One writer at a time: wait for the lock rather than fail with "database is locked".
        kwargs["connect_args"] = {"timeout": 30}
        # One call on aiosqlite's thread per statement, not four (fedi.store.sqlite_driver).
        kwargs["module"] = sqlite_driver.dbapi()
    else:
        # Overflow connections are closed on return and reopened: bench/inbox measured that
        # churn as most of PostgreSQL's CPU, so the pool is sized and overflow kept small.
        kwargs["pool_size"] = settings.database_pool_size
        kwargs["max_overflow"] = max(2, settings.database_pool_size // 4)
    try:
        engine = create_async_engine(settings.database_url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(
            f"FEDI_DATABASE_URL names no database fedi can open ({exc}); use "
            "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/NAME"
        ) from None
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web server read while the worker writes; NORMAL is durable in WAL mode
    # except for the last transactions on power loss, which SQLite users accept.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Each connection keeps its own page cache (2 MB by default), on top of the OS's cache of
    # the same file; 1 MB each saved a worker ~3 MB under bench.dead_hosts and cost the pages
    # nothing measurable (bench.pages --database sqlite, CPU per request, runs alternated).
    cursor.execute("PRAGMA cache_size=-1024")
    cursor.close()


def missing_sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file FEDI_DATABASE_URL names when it does not exist (opening would create
    an empty one, which is never what a check should do)."""
    if not settings.is_sqlite:
        return None
    path = make_url(settings.database_url).database or ""  # as the engine will read it
    return None if path in ("", ":memory:") or Path(path).is_file() else Path(path)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)
