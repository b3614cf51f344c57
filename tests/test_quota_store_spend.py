"""Open burst reservations in the quota store, on SQLite and PostgreSQL: what an admission loop
started afresh reads to settle the bursts reserved before it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from quota.config import Budget
from quota.store import Spend
from tests.quota_fixtures import ACTOR

pytest_plugins = ["tests.quota_fixtures"]


def test_open_spend_lists_unsettled_reservations_oldest_first(loaded):
    loaded.set_pool(replace(loaded.config().pool("nlp"), budget=Budget(per_day=100.0)), ACTOR)
    day = datetime(2026, 11, 25, 9, tzinfo=UTC)
    for workload, hour, amount in (("nlp/b", 2, 20.0), ("nlp/a", 1, 10.0), ("nlp/c", 3, 5.0)):
        loaded.reserve_spend("nlp", workload, "eci", amount, day + timedelta(hours=hour), ACTOR)
    loaded.settle_spend("nlp/c", 1.0, ACTOR)
    assert loaded.open_spend() == [Spend("nlp/a", "nlp", "eci", day + timedelta(hours=1), 10.0),
                                   Spend("nlp/b", "nlp", "eci", day + timedelta(hours=2), 20.0)]
    assert all(s.started_at.utcoffset() == timedelta(0) for s in loaded.open_spend())  # aware, in UTC
