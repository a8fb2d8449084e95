"""Where a database's schema stands against this code's migrations, without changing it."""

from __future__ import annotations

from dataclasses import dataclass

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.store.migrate import alembic_config


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no schema yet
    head: str | None
    known: bool  # this code has the current revision (False: a newer fedi migrated it)

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def advice(self) -> str:
        """One sentence on what to do (empty at head)."""
        if self.at_head:
            return ""
        if not self.known:
            return (f"the database is at revision {self.current}, which this fedi does not "
                    f"know (its newest is {self.head}): a newer fedi migrated it; run that "
                    "version or a newer one")
        was = f"at revision {self.current}" if self.current else "empty"
        return f"the database is {was} and this fedi needs {self.head}: run `fedi migrate`"


async def schema_state(engine: AsyncEngine) -> SchemaState:
    async with engine.connect() as conn:
        has_table = await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))
        current = (
            (await conn.execute(text("SELECT version_num FROM alembic_version")))
            .scalar_one_or_none() if has_table else None
        )
    scripts = ScriptDirectory.from_config(alembic_config())
    known = True
    if current is not None:
        try:
            known = scripts.get_revision(current) is not None
        except CommandError:
            known = False
    return SchemaState(current, scripts.get_current_head(), known)
