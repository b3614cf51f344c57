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

#: How long PostgreSQL lets a session sit idle inside a transaction before it ends the session, and
#: its locks with it. A leader paused inside a change (a stopped process, a frozen VM) holds the
#: store's row lock, which a new leader needs for its epoch: without a bound, until it resumes.
#: Far above the time between two statements of one change (one decision), so that none is cut.
IDLE_IN_TRANSACTION_S = 60.0


def make_engine(url: str, idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S) -> Engine:
    usable = "give sqlite:///FILE or postgresql://USER:PASSWORD@HOST/DB"
    try:
        parsed = make_url(database_url(url))
    except ArgumentError:
        raise StoreError(f"the database URL is not a URL: {usable}") from None
    try:
        if parsed.get_backend_name() != "sqlite":
            return _postgresql(create_engine(parsed, pool_pre_ping=True), idle_in_transaction_s)
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


def _postgresql(engine: Engine, idle_in_transaction_s: float) -> Engine:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # A SET on each new session, not a startup option: PgBouncer refuses those. Committed, as
        # the pool's rollback when the connection comes back would undo it.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {round(idle_in_transaction_s * 1000)}")
        dbapi_connection.commit()

    return engine


def stored_utc(at: datetime) -> datetime:
    """A stored time in UTC: SQLite gives back the UTC time written, without a zone; PostgreSQL
    the session's zone."""
    return at.replace(tzinfo=at.tzinfo or UTC).astimezone(UTC)
