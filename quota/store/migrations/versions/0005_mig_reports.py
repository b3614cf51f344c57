"""The latest MIG layout each node agent reported, shared by the replicas and kept across restarts.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mig_reports",
        sa.Column("node", sa.String(253), primary_key=True),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mig_reports")
