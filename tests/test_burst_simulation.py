"""Overflow in the simulator: what waits past the threshold starts on a target after its start-up
time, pays its price, stays within budget, goes whole or not at all, and never when it cannot."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.budget import DAY_S
from burst.targets import burst_from_yaml
from quota.config import Budget, Pool, QuotaConfig
from scheduler.model.cluster import PROJECT_LABEL
from simulator.timeline import run_timeline
from simulator.traces import Arrival
from tests.conftest import GiB, build_node, build_pod

HOUR = 3600.0
CONFIG = burst_from_yaml("""
threshold: 30m
max_runtime: 8h
targets:
  - name: eci
    type: eci
    provider: alibabacloud
    startup: 90s
    instance_types:
      - {name: gpu.small, cpu: 8, memory: 32Gi, gpu: 1, gpu_model: A10, price: 2.0}
      - {name: gpu.large, cpu: 64, memory: 512Gi, gpu: 8, gpu_model: A10, price: 16.0}
""")


def job(name: str, at: float, hours: float, *, gpus: int = 1, project: str = "nlp", **fields) -> Arrival:
    pod = build_pod(name, cpu=4000, memory=16 * GiB, gpus=gpus, namespace=project, project=project,
                    labels={PROJECT_LABEL: project}, **fields)
    return Arrival(pod, at, hours * HOUR)


def run(arrivals, config=CONFIG, quota=None, seed=0):
    node = build_node("gpu-1", gpus=1, model="A10", cpu=16_000, memory=64 * GiB)
    return {p.name.split("/")[-1]: p for p in run_timeline([node], arrivals, "default", seed, quota=quota, burst=config).pods}


def test_work_waiting_past_the_threshold_overflows_after_the_start_up_time():
    pods = run([job("a", 0, 2), job("b", 0, 2)])
    local, burst = (pods["a"], pods["b"]) if not pods["a"].burst else (pods["b"], pods["a"])
    assert local.burst == "" and local.start == 0
    assert burst.burst == "eci" and burst.start == 30 * 60 + 90
    assert burst.end == burst.start + 2 * HOUR
    assert burst.cost == pytest.approx(2.0 * (2 * HOUR + 90) / HOUR)  # billed from creation


def test_work_that_fits_before_the_threshold_stays():
    pods = run([job("a", 0, 0.25), job("b", 0, 2)])
    assert not pods["a"].burst and not pods["b"].burst
    assert pods["b"].start == 0.25 * HOUR


def test_ineligible_work_never_overflows():
    pods = run([job("a", 0, 10), job("b", 0, 1, gpus=1)], config=replace(CONFIG, kinds=frozenset()))
    assert not any(p.burst for p in pods.values())
    assert pods["b"].start == 10 * HOUR


def test_a_target_out_of_stock_leaves_the_work_waiting_with_the_reason():
    empty = replace(CONFIG, targets=(replace(CONFIG.targets[0], stock_out=1.0),))
    pods = run([job("a", 0, 10), job("b", 0, 1)], config=empty)
    waiting = pods["b"]
    assert not waiting.burst and waiting.start == 10 * HOUR


def test_a_gang_overflows_whole():
    members = [job(f"w{k}", 0, 1, annotations={"slotwise.io/gang": "g"}) for k in range(3)]
    pods = run([job("a", 0, 5), *members])
    gang = [pods[f"w{k}"] for k in range(3)]
    assert {p.burst for p in gang} == {"eci"} and len({p.start for p in gang}) == 1


def test_the_same_seed_gives_the_same_run():
    arrivals = [job(f"j{k}", k * 600.0, 1 + k % 3) for k in range(12)]
    flaky = replace(CONFIG, targets=(replace(CONFIG.targets[0], stock_out=0.5),))
    assert run(arrivals, flaky, seed=7) == run(arrivals, flaky, seed=7)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(per_day=st.floats(5, 80), arrivals=st.lists(st.tuples(st.integers(0, 3 * 24), st.floats(0.5, 6)),
                                                   min_size=1, max_size=30))
def test_overflow_never_passes_a_pool_budget(per_day, arrivals):
    quota = QuotaConfig((Pool("nlp", budget=Budget(per_day=per_day)),))
    pods = run([job(f"j{k}", hour * HOUR, hours) for k, (hour, hours) in enumerate(arrivals)], quota=quota)
    by_day: dict[int, float] = {}
    for p in pods.values():
        if p.burst:
            day = int((p.start - 90) // DAY_S)  # reserved when it was sent, 90 s before it started
            by_day[day] = by_day.get(day, 0.0) + p.cost
    assert all(spent <= per_day + 1e-6 for spent in by_day.values()), (by_day, per_day)
