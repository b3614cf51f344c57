"""Leader election over a Lease: one leader at a time, takeover once the lease expires as the
candidate observed it, a paused leader that stops deciding, release for a quick handover; and the
store's fencing epoch that refuses an old leader's writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quota.admission import request_for
from quota.store import Fenced
from slotwise.server.leader import Elector, LeaseConflict, Timings
from tests.conftest import Clock, build_pod
from tests.quota_fixtures import sqlite_store

TIMINGS = Timings()  # kube-scheduler's: 15 s lease, 10 s renew deadline, 2 s retry


class Lease:
    """One Lease as the API server keeps it: a resourceVersion bumped on every write, and a write
    based on an older one refused (409)."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] | None = None
        self.version = 0

    def read(self) -> tuple[dict[str, Any], str] | None:
        return None if self.spec is None else (dict(self.spec), str(self.version))

    def create(self, spec: dict[str, Any]) -> None:
        if self.spec is not None:
            raise LeaseConflict("AlreadyExists")
        self.spec, self.version = dict(spec), self.version + 1

    def replace(self, spec: dict[str, Any], resource_version: str) -> None:
        if resource_version != str(self.version):
            raise LeaseConflict("Conflict")
        self.spec, self.version = dict(spec), self.version + 1


def electors(n: int, lease: Lease, clock: Clock) -> list[Elector]:
    wall = lambda: datetime.fromtimestamp(clock(), UTC)  # noqa: E731
    return [Elector(lease, f"replica-{i}", TIMINGS, clock, wall) for i in range(n)]


def test_the_first_candidate_creates_the_lease_and_leads_and_the_other_waits():
    lease, clock = Lease(), Clock(1000.0)
    a, b = electors(2, lease, clock)
    assert a.try_acquire_or_renew() and a.leading() and a.term == 1
    assert not b.try_acquire_or_renew() and not b.leading()
    assert lease.spec["holderIdentity"] == "replica-0"
    assert lease.spec["leaseDurationSeconds"] == 15 and lease.spec["leaseTransitions"] == 0
    assert lease.spec["renewTime"].endswith("Z") and "." in lease.spec["renewTime"]  # MicroTime


def test_a_dead_leaders_lease_is_taken_once_unchanged_for_its_duration_as_the_candidate_saw_it():
    lease, clock = Lease(), Clock(1000.0)
    a, b = electors(2, lease, clock)
    a.try_acquire_or_renew()
    for _ in range(5):  # a renews every retry period; b sees a new record each time
        clock.now += TIMINGS.retry_s
        a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    died = clock.now  # a stops renewing (kill -9)
    while not b.try_acquire_or_renew():
        assert clock.now - died < TIMINGS.duration_s
        clock.now += TIMINGS.retry_s
    assert TIMINGS.duration_s <= clock.now - died <= TIMINGS.duration_s + TIMINGS.retry_s
    assert lease.spec["holderIdentity"] == "replica-1" and lease.spec["leaseTransitions"] == 1
    assert not a.leading()


def test_a_paused_leader_stops_deciding_at_the_renew_deadline_before_anyone_can_take_over():
    lease, clock = Lease(), Clock(1000.0)
    a, b = electors(2, lease, clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    clock.now += TIMINGS.renew_deadline_s - 0.01
    assert a.leading()
    clock.now += 0.02  # still paused: no renew happened, and no call is needed to know it
    assert not a.leading()
    assert not b.try_acquire_or_renew()  # the lease has not expired for b yet: nobody leads for a while


def test_a_leader_that_renews_late_but_before_anyone_took_over_leads_again_in_a_new_term():
    lease, clock = Lease(), Clock(1000.0)
    [a] = electors(1, lease, clock)
    a.try_acquire_or_renew()
    clock.now += TIMINGS.renew_deadline_s + 1
    assert not a.leading()
    assert a.try_acquire_or_renew() and a.term == 2  # a new term: a new fencing epoch
    assert lease.spec["leaseTransitions"] == 0  # the same holder: not a transition


def test_a_released_lease_is_taken_at_the_next_try():
    lease, clock = Lease(), Clock(1000.0)
    a, b = electors(2, lease, clock)
    a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert not a.leading() and lease.spec["holderIdentity"] == ""
    clock.now += TIMINGS.retry_s
    assert b.try_acquire_or_renew() and b.leading()


def test_two_candidates_racing_for_an_expired_lease_one_wins():
    lease, clock = Lease(), Clock(1000.0)
    a, b, c = electors(3, lease, clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    c.try_acquire_or_renew()
    clock.now += TIMINGS.duration_s + 1
    stale = lease.read()
    b.leases = c.leases = lease
    assert b.try_acquire_or_renew()
    with pytest.raises(LeaseConflict):  # c read the same record b replaced
        c.leases.replace({**stale[0], "holderIdentity": "replica-2"}, stale[1])
    assert not c.try_acquire_or_renew()  # and on its own try it sees b's fresh renewal


def test_timings_must_leave_the_old_leader_time_to_stop():
    with pytest.raises(ValueError, match="renew deadline < lease duration"):
        Timings(duration_s=10, renew_deadline_s=10)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0, 6), st.booleans()), min_size=1, max_size=120))
def test_never_two_leaders_whatever_the_order_pauses_and_crashes(steps):
    """Each step: one replica tries (or, paused or dead, does nothing) after the clock moved on.
    At no instant may two replicas believe they lead."""
    lease, clock = Lease(), Clock(1000.0)
    replicas = electors(3, lease, clock)
    for who, elapsed, acts in steps:
        clock.now += elapsed
        if acts:
            replicas[who].try_acquire_or_renew()
        assert sum(r.leading() for r in replicas) <= 1


# The fencing epoch ------------------------------------------------------------------------------
QUOTA = """
pools:
- name: nlp
  guaranteed: {nvidia.com/gpu: 4}
"""


def test_an_old_leaders_store_writes_nothing_once_a_new_leader_took_an_epoch(tmp_path):
    with sqlite_store(tmp_path, QUOTA) as store:
        old = store.fenced(store.take_leadership("replica-0"))
        old.admit(request_for("nlp/a", [build_pod("a", gpus=1, project="nlp")]), 0.0, "loop")
        new = store.fenced(store.take_leadership("replica-1"))
        before = (store.ledger().workloads.keys(), len(store.audit(limit=1000)))
        with pytest.raises(Fenced, match="replica-1 leads with epoch 2"):
            old.admit(request_for("nlp/b", [build_pod("b", gpus=1, project="nlp")]), 0.0, "loop")
        with pytest.raises(Fenced):
            old.record("loop", "place", "nlp/b", {"node": "n1"})
        with pytest.raises(Fenced):
            old.release("nlp/a", "loop")
        assert (store.ledger().workloads.keys(), len(store.audit(limit=1000))) == before
        new.release("nlp/a", "loop")  # the new leader's writes go through
        assert not store.ledger().workloads
        assert [e.detail["epoch"] for e in store.audit(limit=1000) if e.action == "lead"] == [2, 1]
