"""MIG layout reports kept in slotwise's database: what one replica receives every replica sees,
a restart loses none, and an unchanged report (sent every few seconds) changes nothing."""

from __future__ import annotations

from mig.store import ReportedFleet
from quota.store import Store
from slotwise.server.mig_layouts import VERSION_TTL_S, StoredLayouts
from tests.conftest import Clock
from tests.test_server_mig import FREE, FULL, report

pytest_plugins = ["tests.quota_fixtures"]


def test_reports_are_kept_and_read_back(store: Store):
    layouts = StoredLayouts(store)
    assert (layouts.nodes(), layouts.reports(), layouts.get("mig-free"), layouts.version) == ([], [], None, 0)
    layouts.put(FULL)
    layouts.put(FREE)
    assert layouts.nodes() == ["mig-free", "mig-full"]
    assert layouts.reports() == [FREE, FULL] and layouts.get("mig-full") == FULL
    version = layouts.version
    layouts.put(FREE)  # the same layout again: nothing changes
    assert layouts.version == version
    busy = report("mig-free", [("3g.40gb", 0, True), ("3g.40gb", 4, True)])
    layouts.put(busy)
    assert layouts.version > version and layouts.get("mig-free") == busy


def test_another_replica_and_a_restart_see_the_reports(store: Store, database_url: str):
    clock = Clock()
    here, there = StoredLayouts(store), StoredLayouts(Store(database_url), clock)
    fleet = ReportedFleet(there)
    assert fleet().placeable().get("3g.40gb", 0) == 0
    here.put(FREE)
    assert fleet().placeable().get("3g.40gb", 0) == 0  # there trusts the version it read for a second
    clock.now += VERSION_TTL_S
    assert fleet().placeable()["3g.40gb"] == 1
    restarted = Store(database_url)
    assert StoredLayouts(restarted).reports() == [FREE]
    there.store.close()
    restarted.close()
