"""The first schema: pools, limits, budgets, settings, versions, workloads, audit, tokens.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_APPEND_ONLY = "the audit trail is append-only"


def upgrade() -> None:
    op.create_table(
        "pools",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("pools.id", ondelete="RESTRICT")),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_table(
        "pool_limits",
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("resource", sa.String(253), primary_key=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "budgets",
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("per_day", sa.Float),
        sa.Column("per_month", sa.Float),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    versions = op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("config", sa.BigInteger, nullable=False),
        sa.Column("ledger", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(versions, [{"id": 1, "config": 0, "ledger": 0}])
    op.create_table(
        "workloads",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id", ondelete="RESTRICT"), nullable=False, index=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("admitted_at", sa.Float, nullable=False),
        sa.Column("gpu_model", sa.String(253)),
        sa.Column("borrowed", sa.Boolean, nullable=False),
        sa.Column("terminating", sa.Boolean, nullable=False),
        sa.Column("charge", sa.Text, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor", sa.String(253), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False, index=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(253), nullable=False, unique=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("pool", sa.String(63)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
                       BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END; $$ LANGUAGE plpgsql""")
        op.execute("CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
                   "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_no_{event.lower()} BEFORE {event} ON audit "
                       f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_append_only ON audit")
        op.execute("DROP FUNCTION audit_append_only()")
    for table in ("tokens", "audit", "workloads", "versions", "settings", "budgets", "pool_limits", "pools"):
        op.drop_table(table)
