"""A group's pinned threads, and its threads newest first, are read by index, not by reading
its every post: `ix_posts_group_pinned`, `ix_posts_group_threads`

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_posts_group_pinned", "posts", ["group_id", "pinned_at"], unique=False)
    roots = sa.text("thread_id = id")
    op.create_index("ix_posts_group_threads", "posts", ["group_id", "published"], unique=False,
                    postgresql_where=roots, sqlite_where=roots)


def downgrade() -> None:
    op.drop_index("ix_posts_group_threads", table_name="posts")
    op.drop_index("ix_posts_group_pinned", table_name="posts")
