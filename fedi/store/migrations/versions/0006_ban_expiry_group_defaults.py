"""Bans that end, a group's default visibility and banner, indexes for the reading pages

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("group_bans") as batch:
        batch.add_column(sa.Column("expires_at", sa.Float(), nullable=True))
    op.create_index(op.f("ix_group_bans_expires_at"), "group_bans", ["expires_at"])
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("default_visibility", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("banner", sa.String(length=2048), nullable=True))
    op.create_index("ix_posts_group_published", "posts", ["group_id", "published"])
    op.create_index("ix_posts_thread_published", "posts", ["thread_id", "published"])


def downgrade() -> None:
    op.drop_index("ix_posts_thread_published", table_name="posts")
    op.drop_index("ix_posts_group_published", table_name="posts")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("banner")
        batch.drop_column("default_visibility")
    op.drop_index(op.f("ix_group_bans_expires_at"), table_name="group_bans")
    with op.batch_alter_table("group_bans") as batch:
        batch.drop_column("expires_at")
