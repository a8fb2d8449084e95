"""On PostgreSQL, `deliveries.activity_id` is no longer checked by a foreign key

The check was a trigger fired per row: a relay to 99 member servers ran it 99 times per
processed post, a fifth of the database's CPU for each (issue 13 item 8). A delivery row is
only ever written by `fedi.delivery.enqueue`, in the transaction that has just stored its
outbound activity, and outbound activities are never deleted, so the check could not fail.

SQLite keeps the constraint of the first schema: there it is an index probe within the
INSERT, not a trigger, and dropping it would mean copying the whole table. Dropping a check
loosens the schema: the release before this one writes the same rows and works on.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for name in _activity_foreign_keys(bind):
        op.drop_constraint(name, "deliveries", type_="foreignkey")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or _activity_foreign_keys(bind):
        return
    op.create_foreign_key("deliveries_activity_id_fkey", "deliveries", "outbound_activities",
                          ["activity_id"], ["id"])


def _activity_foreign_keys(bind: sa.Connection) -> list[str]:
    """The names of the foreign keys from deliveries.activity_id (PostgreSQL named the first
    schema's unnamed one)."""
    return [fk["name"] for fk in sa.inspect(bind).get_foreign_keys("deliveries")
            if fk["constrained_columns"] == ["activity_id"] and fk["name"]]
