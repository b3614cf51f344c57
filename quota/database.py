"""Which database the quota store uses: URL conventions, kept apart from SQLAlchemy so that the
commands that only name a database (their options and help) do not load it."""

from __future__ import annotations

#: The embedded default: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///slotwise.db"


def database_url(url: str) -> str:
    """``postgresql://`` URLs use psycopg 3, the driver slotwise installs."""
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url
