"""The SQLAlchemy engine for a database URL, set up so that SQLite serialises changes as
PostgreSQL's row lock does, and reads never wait for them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError

from quota.database import database_url
from quota.store.errors import StoreError

#: Execution option of the connections :meth:`Store._read` uses.
READ_ONLY = "slotwise_read_only"


def make_engine(url: str) -> Engine:
    usable = "give sqlite:///FILE or postgresql://USER:PASSWORD@HOST/DB"
    try:
        parsed = make_url(database_url(url))
    except ArgumentError:
        raise StoreError(f"the database URL is not a URL: {usable}") from None
    try:
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True)
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
    except (ArgumentError, ImportError) as exc:  # no dialect, or its driver is not installed
        raise StoreError(f"the database URL {parsed.render_as_string(hide_password=True)!r} names a database "
                         f"slotwise cannot use ({exc}): {usable}") from None

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        for pragma in ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=30000"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A change takes the write lock now, not on its first write; a read takes none and sees
        # WAL's last committed state, so token checks and scrapes never queue behind admissions.
        connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


def stored_utc(at: datetime) -> datetime:
    """A stored time in UTC: SQLite gives back the UTC time written, without a zone; PostgreSQL
    the session's zone."""
    return at.replace(tzinfo=at.tzinfo or UTC).astimezone(UTC)
