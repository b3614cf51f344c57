"""Open burst reservations in the quota store, on SQLite and PostgreSQL: what an admission loop
started afresh reads to settle the bursts reserved before it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text

from quota.config import Budget, Pool
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


# Budget windows: the UTC calendar day and month of a time ----------------------------------------
PLUS_TWO = timezone(timedelta(hours=2))


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


#: (budget, bursts reserved (start, amount), when the budget is read, what the store says is left)
WINDOWS = [
    # A month of 31 days: a burst on its first second still counts on its last.
    (Budget(per_month=100.0), [(utc(2026, 12, 1), 60.0)], utc(2026, 12, 31, 23, 59, 59), (40.0, 100.0)),
    (Budget(per_month=100.0), [(utc(2026, 12, 1), 60.0), (utc(2026, 12, 17, 8), 25.0)], utc(2026, 12, 31), (15.0, 100.0)),
    # The last second of a month is not the next month's; nor is the next month's the last month's.
    (Budget(per_month=100.0), [(utc(2026, 11, 30, 23, 59, 59), 70.0)], utc(2026, 12, 1), (100.0, 100.0)),
    (Budget(per_month=100.0), [(utc(2026, 12, 1), 70.0)], utc(2026, 11, 30, 23, 59, 59), (100.0, 100.0)),
    (Budget(per_month=100.0), [(utc(2026, 11, 30, 23, 59, 59), 70.0)], utc(2026, 11, 1), (30.0, 100.0)),
    # Year end: December's spend is December's, January starts afresh.
    (Budget(per_month=100.0), [(utc(2026, 12, 15), 60.0)], utc(2026, 12, 31, 23, 59, 59), (40.0, 100.0)),
    (Budget(per_month=100.0), [(utc(2026, 12, 31, 23, 59, 59), 60.0)], utc(2027, 1, 1), (100.0, 100.0)),
    # per_day resets at midnight UTC while the month keeps counting; the tighter limit is reported.
    (Budget(50.0, 100.0), [(utc(2026, 11, 30, 23), 40.0)], utc(2026, 11, 30, 23, 59, 59), (10.0, 50.0)),
    (Budget(50.0, 100.0), [(utc(2026, 11, 30, 23), 40.0)], utc(2026, 12, 1), (50.0, 50.0)),
    (Budget(50.0, 100.0), [(utc(2026, 12, 1, 10), 50.0), (utc(2026, 12, 2, 10), 40.0)], utc(2026, 12, 3), (10.0, 100.0)),
    (Budget(50.0, 100.0), [(utc(2026, 12, 1, 10), 50.0), (utc(2026, 12, 2, 10), 40.0)], utc(2026, 12, 2, 23), (10.0, 50.0)),
    # A time given in another zone falls in its UTC day: 00:30 on 1 December at +02:00 is 30 November.
    (Budget(per_month=100.0), [(datetime(2026, 12, 1, 0, 30, tzinfo=PLUS_TWO), 70.0)], utc(2026, 12, 1, 1), (100.0, 100.0)),
    (Budget(per_month=100.0), [(datetime(2026, 12, 1, 0, 30, tzinfo=PLUS_TWO), 70.0)], utc(2026, 11, 30), (30.0, 100.0)),
    (Budget(per_month=100.0), [(utc(2026, 11, 30, 22, 30), 70.0)], datetime(2026, 12, 1, 0, 30, tzinfo=PLUS_TWO),
     (30.0, 100.0)),
]


def test_budget_windows_are_the_utc_calendar_day_and_month(loaded):
    for case, (budget, spends, at, left) in enumerate(WINDOWS):  # a pool of its own per case: one store for all
        loaded.set_pool(Pool(f"case{case}", budget=budget), ACTOR)
        for k, (started, amount) in enumerate(spends):
            loaded.reserve_spend(f"case{case}", f"case{case}/w{k}", "eci", amount, started, ACTOR)
        assert (case, loaded.budget_left(f"case{case}", at)) == (case, left)


def test_a_monthly_budget_refuses_what_earlier_days_of_the_month_used(loaded):
    """60 reserved on the 1st and settled at 50, 30 on the 20th: 20 of 100 are left on the 31st,
    so 21 is refused there while the first of the next month starts afresh."""
    loaded.set_pool(replace(loaded.config().pool("nlp"), budget=Budget(per_day=80.0, per_month=100.0)), ACTOR)
    loaded.reserve_spend("nlp", "nlp/a", "eci", 60.0, utc(2026, 12, 1), ACTOR)
    loaded.settle_spend("nlp/a", 50.0, ACTOR)
    loaded.reserve_spend("nlp", "nlp/b", "eci", 30.0, utc(2026, 12, 20, 12), ACTOR)
    last = utc(2026, 12, 31, 23, 59, 59)
    assert loaded.budget_left("nlp", last) == (20.0, 100.0)
    with pytest.raises(StoreError, match=r"overflow needs 21.00, 20.00 of budget left"):
        loaded.reserve_spend("nlp", "nlp/c", "eci", 21.0, last, ACTOR)
    loaded.reserve_spend("nlp", "nlp/c", "eci", 20.0, last, ACTOR)
    assert loaded.budget_left("nlp", last) == (0.0, 100.0)
    assert loaded.budget_left("nlp", utc(2027, 1, 1)) == (80.0, 80.0)
    assert [(s.workload, s.started_at, s.reserved) for s in loaded.open_spend()] == [
        ("nlp/b", utc(2026, 12, 20, 12), 30.0), ("nlp/c", last, 20.0)]
