"""What the store refuses: a change against its rules, a missing object, a value the database
cannot hold. Whatever was refused left the database as it was."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DataError, DBAPIError


class StoreError(ValueError):
    """A change the store refuses; nothing was written."""


class NotFound(StoreError):
    pass


class Fenced(Exception):
    """The writer is no longer the leader: another replica has taken a newer epoch. Nothing was written."""


def database_reason(exc: DBAPIError) -> str:
    """What the database (its driver) said, on one line, without SQLAlchemy's decoration."""
    text = str(exc.orig if exc.orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def refused_values() -> Iterator[None]:
    """A value the database cannot hold, even to compare with (PostgreSQL: a NUL character, a
    name longer than its column), is a :class:`StoreError`: the transaction was rolled back."""
    try:
        yield
    except DataError as exc:
        raise StoreError(f"the database refused a value: {database_reason(exc)}") from None
