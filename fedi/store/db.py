"""Engine and session factory. Only app.py and cli.py call these."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from fedi.config import Settings


def make_engine(settings: Settings) -> AsyncEngine:
    kwargs: dict[str, Any] = {}
    if settings.is_sqlite:
        # One writer at a time: wait for the lock rather than fail with "database is locked".
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # Overflow connections are closed on return and reopened: bench/inbox measured that
        # churn as most of PostgreSQL's CPU, so the pool is sized and overflow kept small.
        kwargs["pool_size"] = settings.database_pool_size
        kwargs["max_overflow"] = max(2, settings.database_pool_size // 4)
    engine = create_async_engine(settings.database_url, **kwargs)
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
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)
