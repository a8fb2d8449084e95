"""Ed25519 assertion keys (FEP-521a) for object integrity proofs (FEP-8b32)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("actors") as batch:
        batch.add_column(sa.Column("assertion_key_id", sa.String(length=2048), nullable=True))
        batch.add_column(sa.Column("assertion_public_key", sa.Text(), nullable=True))
        batch.add_column(sa.Column("assertion_private_pem", sa.Text(), nullable=True))
    # Local actors made before this revision get their key now (Ed25519 keys are cheap).
    from fedi.activitypub.integrity import generate_ed25519_keypair

    actors = sa.table("actors", sa.column("id", sa.Integer), sa.column("uri", sa.String),
                      sa.column("local", sa.Boolean), sa.column("assertion_key_id", sa.String),
                      sa.column("assertion_public_key", sa.Text),
                      sa.column("assertion_private_pem", sa.Text))
    bind = op.get_bind()
    for actor_id, uri in bind.execute(
        sa.select(actors.c.id, actors.c.uri).where(actors.c.local.is_(True))
    ).all():
        private_pem, public_key = generate_ed25519_keypair()
        bind.execute(actors.update().where(actors.c.id == actor_id).values(
            assertion_key_id=f"{uri}#ed25519-key", assertion_public_key=public_key,
            assertion_private_pem=private_pem))


def downgrade() -> None:
    with op.batch_alter_table("actors") as batch:
        batch.drop_column("assertion_private_pem")
        batch.drop_column("assertion_public_key")
        batch.drop_column("assertion_key_id")
