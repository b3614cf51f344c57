"""The quota database: what admins own (pools, limits, budgets, tokens), the workloads admitted
against it, and the append-only audit trail. Amounts are integers in base units (cpu in
millicores, memory in bytes, GPUs in milli-GPU), exactly as the ledger counts them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class PoolRow(Base):
    __tablename__ = "pools"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="RESTRICT"))
    #: Order among siblings, as the admin wrote them.
    position: Mapped[int] = mapped_column(Integer)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    description: Mapped[str] = mapped_column(Text, default="")


class LimitRow(Base):
    """One named amount of a pool: ``kind`` is guaranteed, max, shareable or borrow_limit."""

    __tablename__ = "pool_limits"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    resource: Mapped[str] = mapped_column(String(253), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class BudgetRow(Base):
    """A pool's spend limits for overflow capacity."""

    __tablename__ = "budgets"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
    per_day: Mapped[float | None] = mapped_column(Float)
    per_month: Mapped[float | None] = mapped_column(Float)


class SettingRow(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class VersionRow(Base):
    """One row, locked by every change: admissions serialise on it, the counters tell a
    process whether its cached configuration and ledger are still current, and the leader's
    epoch fences a replica that is no longer leader (``Store.fenced``)."""

    __tablename__ = "versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config: Mapped[int] = mapped_column(BigInteger, default=0)
    ledger: Mapped[int] = mapped_column(BigInteger, default=0)
    leader_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    leader: Mapped[str | None] = mapped_column(String(253), nullable=True)


class WorkloadRow(Base):
    """An admitted pod or gang and what it is charged."""

    __tablename__ = "workloads"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="RESTRICT"), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    admitted_at: Mapped[float] = mapped_column(Float)
    gpu_model: Mapped[str | None] = mapped_column(String(253))
    borrowed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: A reclaim victim in its grace period: still charged until it is released.
    terminating: Mapped[bool] = mapped_column(Boolean, default=False)
    #: JSON object resource -> amount.
    charge: Mapped[str] = mapped_column(Text)


class AuditRow(Base):
    """Append-only (the database refuses updates and deletes): every configuration change and
    every admit, borrow, reclaim, release and deny decision."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(253))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(512), index=True)
    detail: Mapped[str] = mapped_column(Text)


class TokenRow(Base):
    """An API token: only its SHA-256 digest is kept."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    #: For a viewer: the pool whose subtree it may read.
    pool: Mapped[str | None] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SpendRow(Base):
    """Overflow spend: what a burst reserved when it started (price x the longest it may run)
    and, once it ended, what it cost. A workload holds at most one open reservation; it may
    burst again after it is settled (a recreated pod or a rerun gang keeps its key)."""

    __tablename__ = "burst_spend"
    __table_args__ = (Index("uq_burst_spend_open_workload", "workload", unique=True,
                            sqlite_where=text("spent IS NULL"), postgresql_where=text("spent IS NULL")),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool: Mapped[str] = mapped_column(String(63), index=True)
    workload: Mapped[str] = mapped_column(String(512))
    target: Mapped[str] = mapped_column(String(253))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    reserved: Mapped[float] = mapped_column(Float)
    spent: Mapped[float | None] = mapped_column(Float)


class LayoutReportRow(Base):
    """The latest MIG layout report of a node (its JSON, as the agent sent it once validated), and
    the layouts' version when it last changed."""

    __tablename__ = "mig_reports"

    node: Mapped[str] = mapped_column(String(253), primary_key=True)
    report: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)
