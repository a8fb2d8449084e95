"""Deliveries about one object to one inbox keep their order: `deliveries.order_key`

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: rows queued before this revision (and by the previous release while it still
    # runs) have none and are sent unordered, as before.
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("order_key", sa.String(length=32), nullable=True))
        batch.create_index("ix_deliveries_order_key", ["order_key", "state", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_order_key")
        batch.drop_column("order_key")
