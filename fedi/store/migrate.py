"""Run Alembic migrations to head on an async engine (`fedi migrate`, `fedi init`, and `fedi
serve` as it starts).

Alembic is imported only when a migration has to run: a database already at this code's
head is recognised from fedi.store.revisions (Alembic, Mako and Pygments would cost each
long-running process about 7 MB of memory for that question).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.store.revisions import revisions
from fedi.store.schema import stamped_revision

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Upgrade to head; return (revision before, revision after)."""
    async with engine.begin() as conn:
        before = await conn.run_sync(stamped_revision)
        if before is not None and before == revisions().head:
            return before, before  # at head already: every start of `fedi serve`
        await conn.run_sync(_upgrade)
        after = await conn.run_sync(stamped_revision)
    return before, after


def head_revision() -> str | None:
    return revisions().head
