"""The fencing epoch of the replica that decides (leader election): a replica's writes carry
the epoch it took when it became leader and are refused once another has taken a newer one.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("leader_epoch", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("leader", sa.String(253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("leader")
        batch.drop_column("leader_epoch")
