"""Open burst reservations in the quota store, on SQLite and PostgreSQL: what an admission loop
started afresh reads to settle the bursts reserved before it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text

from quota.config import Budget
from quota.store import NotFound, Spend, Store, StoreError
from tests.quota_fixtures import ACTOR, scenario

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


def test_a_settled_workload_may_burst_again_but_never_holds_two_open_reservations(loaded):
    loaded.set_pool(replace(loaded.config().pool("nlp"), budget=Budget(per_day=100.0)), ACTOR)
    at = datetime(2026, 11, 25, 9, tzinfo=UTC)
    loaded.reserve_spend("nlp", "nlp/job", "eci", 10.0, at, ACTOR)
    with pytest.raises(StoreError, match="already has an open overflow reservation"):
        loaded.reserve_spend("nlp", "nlp/job", "eci", 10.0, at, ACTOR)
    loaded.settle_spend("nlp/job", 4.0, ACTOR)
    loaded.reserve_spend("nlp", "nlp/job", "eci", 10.0, at + timedelta(hours=1), ACTOR)  # a rerun under the same key
    assert loaded.budget_left("nlp", at) == (100.0 - 4.0 - 10.0, 100.0)
    loaded.settle_spend("nlp/job", 2.0, ACTOR)  # settles the open one, not the first again
    assert loaded.budget_left("nlp", at) == (100.0 - 4.0 - 2.0, 100.0)
    with pytest.raises(NotFound):
        loaded.settle_spend("nlp/job", 1.0, ACTOR)


def test_reservations_made_under_revision_0002_survive_the_upgrade(database_url):
    """A database last migrated by the release that added the spend ledger keeps its rows through
    the upgrade (and a downgrade and upgrade again), then accepts a rerun of a settled workload."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "quota.store:migrations")
    store = Store(database_url)
    try:
        with store.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "0002")
            connection.execute(text("INSERT INTO burst_spend (pool, workload, target, started_at, reserved, spent) "
                                    "VALUES ('nlp', 'nlp/job', 'eci', :at, 10.0, 3.0)"),
                               {"at": datetime(2026, 11, 25, 9, tzinfo=UTC)})
        store.migrate()
        with store.engine.begin() as connection:  # and back down and up again, rows kept
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0002")
            command.upgrade(cfg, "head")
        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT workload, spent FROM burst_spend")).all() == [("nlp/job", 3.0)]
        store.replace_config(scenario(), ACTOR)
        store.set_pool(replace(store.config().pool("nlp"), budget=Budget(per_day=100.0)), ACTOR)
        store.reserve_spend("nlp", "nlp/job", "eci", 10.0, datetime(2026, 11, 25, 10, tzinfo=UTC), ACTOR)
        assert [s.workload for s in store.open_spend()] == ["nlp/job"]
    finally:
        store.close()
