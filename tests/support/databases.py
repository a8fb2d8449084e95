"""Test databases: a SQLite file by default, a fresh PostgreSQL database when
FEDI_TEST_DATABASE_URL points at a server (CI runs the suite both ways)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from fedi.config import normalise_database_url

ENV = "FEDI_TEST_DATABASE_URL"


def postgres_server_url() -> str | None:
    raw = os.environ.get(ENV, "").strip()
    return normalise_database_url(raw) if raw else None


def using_postgres() -> bool:
    return postgres_server_url() is not None


async def create_database(directory: Path, label: str = "fedi") -> str:
    server = postgres_server_url()
    if server is None:
        return f"sqlite+aiosqlite:///{directory / (label + '.db')}"
    name = f"fedi_test_{label}_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    server = postgres_server_url()
    if server is None:
        return
    name = make_url(url).database
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
