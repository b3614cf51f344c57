"""The overflow spend ledger.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "burst_spend",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pool", sa.String(63), nullable=False, index=True),
        sa.Column("workload", sa.String(512), nullable=False, unique=True),
        sa.Column("target", sa.String(253), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("reserved", sa.Float, nullable=False),
        sa.Column("spent", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("burst_spend")
