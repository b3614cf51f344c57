"""Quota in the simulator, over generated histories: no pool ever goes above its max, and no
owner waits longer than the grace period for capacity it is guaranteed.

The cluster is one large node and every pod asks one cpu, so that whatever quota admits also
fits on the node: what is measured is the quota's behaviour, not fragmentation.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.config import Pool, QuotaConfig, ReclaimSettings
from scheduler.model.cluster import PROJECT_LABEL
from simulator.results import PodRecord
from simulator.timeline import run_timeline
from simulator.traces import Arrival
from tests.conftest import GiB, build_node, build_pod

CAPACITY = 12  # cpus on the one node


@st.composite
def scenarios(draw):
    count = draw(st.integers(2, 3))
    guarantees = draw(st.lists(st.integers(0, 5), min_size=count, max_size=count).filter(lambda g: sum(g) <= CAPACITY))
    pools = []
    for k, g in enumerate(guarantees):
        shareable = draw(st.integers(0, g))
        cap = draw(st.one_of(st.none(), st.integers(g, CAPACITY)))
        pools.append(Pool(f"p{k}", guaranteed={"cpu": 1000 * g}, shareable={"cpu": 1000 * shareable},
                          max={} if cap is None else {"cpu": 1000 * cap}))
    reclaim = ReclaimSettings(grace_s=float(draw(st.integers(0, 50))), min_loan_s=float(draw(st.integers(0, 100))))
    arrivals = []
    for n in range(draw(st.integers(1, 40))):
        pool = f"p{draw(st.integers(0, count - 1))}"
        pod = build_pod(f"w{n}", cpu=1000, memory=0, namespace=pool, project=pool, labels={PROJECT_LABEL: pool})
        arrivals.append(Arrival(pod, float(draw(st.integers(0, 300))), float(draw(st.integers(1, 200)))))
    return QuotaConfig(tuple(pools), reclaim), arrivals


def run(config: QuotaConfig, arrivals: list[Arrival]) -> list[PodRecord]:
    node = build_node("big", cpu=1000 * CAPACITY, memory=1024 * GiB, pods=10_000)
    return list(run_timeline([node], arrivals, "default", 0, quota=config).pods)


def is_running(p: PodRecord, t: float) -> bool:
    """Whether ``p`` runs at ``t``, in its last run or one a reclaim cut short."""
    return any(start is not None and start <= t < (float("inf") if end is None else end)
               for start, end in [*p.evictions, (p.start, p.end)])


def running(pods: list[PodRecord], project: str, t: float) -> int:
    return sum(1 for p in pods if p.project == project and is_running(p, t))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_no_pool_goes_above_its_max(scenario):
    config, arrivals = scenario
    pods = run(config, arrivals)
    times = {t for p in pods for run_ in [*p.evictions, (p.start, p.end)] for t in run_ if t is not None}
    for pool in config.pools:
        if "cpu" in pool.max:
            assert max(running(pods, pool.name, t) for t in times | {0.0}) * 1000 <= pool.max["cpu"]
    assert max(sum(running(pods, q.name, t) for q in config.pools) for t in times | {0.0}) <= CAPACITY


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_guaranteed_capacity_is_back_within_the_grace_period(scenario):
    """A pod that arrives when its pool's running pods, plus its pool's pods still waiting from
    before, leave room in the guarantee starts within the grace period."""
    config, arrivals = scenario
    pods = run(config, arrivals)
    grace = config.reclaim.grace_s
    for pool in config.pools:
        guaranteed = pool.guaranteed.get("cpu", 0) // 1000
        mine = sorted((p for p in pods if p.project == pool.name), key=lambda p: (p.arrival, int(p.name.split("w")[-1])))
        for k, p in enumerate(mine):
            ahead = sum(1 for q in mine[:k] if q.arrival <= p.arrival and not is_running(q, p.arrival)
                        and (q.end is None or q.end > p.arrival))  # still waiting
            if running(pods, pool.name, p.arrival) + ahead + 1 <= guaranteed:
                first = p.evictions[0][0] if p.evictions else p.start  # a later reclaim may evict it
                assert first is not None and first - p.arrival <= grace + 1e-9, (
                    f"{p.name} in {pool.name} (guaranteed {guaranteed}) waited "
                    f"{'forever' if first is None else first - p.arrival} with grace {grace}")


# Fairness: which waiting pool gets freed capacity first ----------------------------------------
def fair_arrivals() -> list[Arrival]:
    """One node of 8 cpu and 32Gi, full at t=0; at t=100 the blocker (a's) leaves and frees 2 cpu
    and 8Gi, room for one of the 2-cpu, 8Gi pods that a, b and c queued at t=1, 2 and 3 (in that
    order). Each runs 10s, so the next in the queue starts when it leaves."""
    def pod(name, pool, cpu, gib, at, duration):
        p = build_pod(name, cpu=1000 * cpu, memory=gib * GiB, namespace=pool, project=pool,
                      labels={PROJECT_LABEL: pool})
        return Arrival(p, float(at), float(duration))
    return [pod("a-hold", "a", 2, 4, 0, 1000), pod("b-hold", "b", 1, 12, 0, 1000), pod("c-hold", "c", 3, 8, 0, 1000),
            pod("blocker", "a", 2, 8, 0, 100),
            pod("a-next", "a", 2, 8, 1, 10), pod("b-next", "b", 2, 8, 2, 10), pod("c-next", "c", 2, 8, 3, 10)]


# While the queue waits, each pool holds only its *-hold pod (of 8 cpu, 32Gi):
#   a: cpu 2/8 = 0.25,  memory 4/32 = 0.125  -> dominant 0.25  (cpu)
#   b: cpu 1/8 = 0.125, memory 12/32 = 0.375 -> dominant 0.375 (memory)
#   c: cpu 3/8 = 0.375, memory 8/32 = 0.25   -> dominant 0.375 (cpu)
# divided by each pool's weight; the lowest starts first (at 100), then 110, then 120.
@pytest.mark.parametrize("weights, starts", [
    # 0.25, 0.375, 0.375: a first; b and c tie and go in arrival order
    pytest.param((1, 1, 1), {"a-next": 100, "b-next": 110, "c-next": 120}, id="equal weights"),
    # 0.25 / 1 = 0.25, 0.375 / 2 = 0.1875, 0.375 / 4 = 0.09375: c, b, a, against arrival order
    pytest.param((1, 2, 4), {"c-next": 100, "b-next": 110, "a-next": 120}, id="weights 1, 2, 4"),
    # 0.25 / 4 = 0.0625, 0.375 / 1 = 0.375, 0.375 / 2 = 0.1875: a, c, b
    pytest.param((4, 1, 2), {"a-next": 100, "c-next": 110, "b-next": 120}, id="weights 4, 1, 2"),
])
def test_the_lowest_weighted_dominant_share_is_served_first(weights, starts):
    limits = {"cpu": 8000, "memory": 32 * GiB}  # names the governed resources; no guarantee, no reclaim
    config = QuotaConfig(tuple(Pool(name, max=limits, weight=w) for name, w in zip("abc", weights)), ReclaimSettings())
    node = build_node("node", cpu=8000, memory=32 * GiB)
    pods = run_timeline([node], fair_arrivals(), "default", 0, quota=config).pods
    assert {p.name.split("/")[1]: p.start for p in pods if p.name.endswith("-next")} == starts  # names: pool/pod
