"""The quota store: configuration, admitted workloads, tokens and the audit trail in SQL
(SQLite by default, PostgreSQL supported), its schema managed by Alembic (``migrations``)."""

from quota.database import DEFAULT_URL, database_url
from quota.store.errors import Fenced, NotFound, StoreError
from quota.store.records import AuditEntry, Principal, Spend
from quota.store.store import MIN_TOKEN_CHARS, ROLES, SCHEMA_REVISION, Store

__all__ = ["DEFAULT_URL", "MIN_TOKEN_CHARS", "ROLES", "SCHEMA_REVISION", "AuditEntry", "Fenced", "NotFound",
           "Principal", "Spend", "Store", "StoreError", "database_url"]
