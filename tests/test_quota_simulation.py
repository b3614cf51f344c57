"""Quota in the simulator, over generated histories: no pool ever goes above its max, and no
owner waits longer than the grace period for capacity it is guaranteed.

The cluster is one large node and every pod asks one cpu, so that whatever quota admits also
fits on the node: what is measured is the quota's behaviour, not fragmentation.
"""

from __future__ import annotations

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
