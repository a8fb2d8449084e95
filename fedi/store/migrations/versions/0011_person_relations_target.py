"""Who asked to hear of an author's new posts is read by index, not by reading every block,
mute and notify of the instance for each post stored: `ix_person_relations_target`

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_person_relations_target", "person_relations", ["target_id", "kind"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_person_relations_target", table_name="person_relations")
