"""Checks that the configured database is reachable and belongs to this configuration.

Run before any command touches data, so that a wrong FEDI_DATABASE_URL or FEDI_BASE_URL
stops with one line saying what to fix, instead of failing deep inside a query (where the
error would drag SQL, and once the instance's new private key, along with it).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.errors import ConfigError
from fedi.store.models import Actor


def summary(exc: BaseException) -> str:
    """The first line of an exception's message, without SQL, parameters or DETAIL lines."""
    orig = getattr(exc, "orig", None)  # a DBAPI error wrapped by SQLAlchemy
    source = orig if isinstance(orig, BaseException) else exc
    lines = str(source).strip().splitlines()
    first = lines[0] if lines else type(source).__name__
    if first.startswith("<class '"):  # SQLAlchemy's asyncpg adapter prefixes the class
        first = first.split(": ", 1)[-1]
    return first[:200]


async def check_connection(engine: AsyncEngine) -> None:
    """ConfigError naming the reason when the database cannot be opened."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if path and path != ":memory:" and not Path(path).parent.is_dir():
        # Said before aiosqlite tries: its failed connect leaves a thread that outlives
        # the event loop and dies noisily.
        raise ConfigError(
            f"cannot open the database: the directory {Path(path).parent} does not exist; "
            "create it or fix FEDI_DATABASE_URL"
        )
    try:
        async with engine.connect():
            pass
    except Exception as exc:
        hint = (
            "check FEDI_DATABASE_URL and that the directory exists and is writable"
            if engine.dialect.name == "sqlite"
            else "check FEDI_DATABASE_URL and that the PostgreSQL server is running"
        )
        raise ConfigError(f"cannot open the database ({summary(exc)}); {hint}") from None


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.lower()}"


async def check_identity(engine: AsyncEngine, base_url: str) -> None:
    """ConfigError when the database was made by an instance with another base URL.

    Local ids are URLs under the base URL and remote servers know them; running a database
    under another address would mint a second instance actor and orphan every local id.
    """
    async with engine.connect() as conn:
        first = (
            await conn.execute(
                select(Actor.uri).where(Actor.local.is_(True)).order_by(Actor.id).limit(1)
            )
        ).scalar_one_or_none()
    if first is None or _origin(first) == base_url:
        return
    raise ConfigError(
        f"this database belongs to the instance at {_origin(first)}, but FEDI_BASE_URL is "
        f"{base_url}; set FEDI_BASE_URL={_origin(first)} (an instance keeps its address "
        "for life), or point FEDI_DATABASE_URL at another database"
    )
