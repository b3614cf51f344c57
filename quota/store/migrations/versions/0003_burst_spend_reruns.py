"""A workload may burst again once its earlier overflow is settled: the workload key is unique
among open reservations only.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = sa.text("spent IS NULL")
#: The name batch mode gives 0002's unnamed constraint on SQLite, and PostgreSQL's default name.
SQLITE_UNIQUE, POSTGRES_UNIQUE = "uq_burst_spend_workload", "burst_spend_workload_key"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        # SQLite cannot drop a constraint: batch mode rebuilds the table, naming the unnamed one.
        with op.batch_alter_table("burst_spend", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}) as batch:
            batch.drop_constraint(SQLITE_UNIQUE, type_="unique")
    else:
        op.drop_constraint(POSTGRES_UNIQUE, "burst_spend", type_="unique")
    op.create_index("uq_burst_spend_open_workload", "burst_spend", ["workload"], unique=True,
                    sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade() -> None:
    op.drop_index("uq_burst_spend_open_workload", "burst_spend")
    with op.batch_alter_table("burst_spend") as batch:
        batch.create_unique_constraint(SQLITE_UNIQUE if _sqlite() else POSTGRES_UNIQUE, ["workload"])
