"""What the store gives back besides configurations and ledgers: callers, audit entries and open
overflow reservations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: an admin may change everything; a viewer reads its pool and the pools below it."""

    name: str
    role: str
    pool: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Spend:
    """An overflow reservation not settled yet."""

    workload: str
    pool: str
    target: str
    started_at: datetime
    reserved: float
