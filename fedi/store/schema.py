"""Where a database's schema stands against this code's migrations, without changing it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.store.revisions import revisions


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


def stamped_revision(connection: Connection) -> str | None:
    """The revision the database says it is at (None: no schema yet), read without Alembic."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    found = connection.execute(text("SELECT version_num FROM alembic_version"))
    return found.scalar_one_or_none()


async def schema_state(engine: AsyncEngine) -> SchemaState:
    async with engine.connect() as conn:
        current = await conn.run_sync(stamped_revision)
    code = revisions()
    return SchemaState(current, code.head, current is None or current in code.known)
