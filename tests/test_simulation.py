"""Fill and timeline runs on clusters small enough to check by hand, and their determinism.

A fill run (the FGD paper's method) shuffles and inflates the trace, then places pods one by one,
never removing any; a timeline run replays arrivals and departures on a simulated clock. Admins
compare policies by these numbers, so each is checked against a computation done by hand here,
and every run must be a pure function of its inputs and seed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.model import openb as openb_reader
from scheduler.model.snapshot import Snapshot
from simulator.fill import inflate, run_fill
from simulator.generate import synthetic_arrivals, synthetic_cluster, synthetic_workload
from simulator.measure import gpu_milli
from simulator.results import FillResult
from simulator.timeline import TraceTimeError, run_timeline
from simulator.traces import Arrival, read_trace

INSUFFICIENT_GPU = "Insufficient nvidia.com/gpu"
POLICIES = ["default", "fgd", "bestfit", "random"]


def total_milli(pods) -> int:
    return sum(gpu_milli(p) for p in pods)


@pytest.fixture
def mixed_pods(make_pod):
    """Ten pods of assorted GPU sizes (19 050 milli in all) and one CPU-only pod."""
    sizes = [dict(gpus=1), dict(gpus=2), dict(share=500), dict(share=300), dict(gpus=4), dict(gpus=1),
             dict(gpus=8), dict(share=250), dict(gpus=1), dict(), dict(gpus=1)]
    return [make_pod(f"p{i}", **size) for i, size in enumerate(sizes)]


# inflate -----------------------------------------------------------------------------------------

def split_clones(pods, originals):
    """The originals kept (in their new order) and the clones appended after them."""
    names = {p.name for p in originals}
    kept = [p for p in pods if p.name in names]
    assert pods[:len(kept)] == kept, "clones come after every original"
    return kept, pods[len(kept):]


def test_inflate_appends_clones_after_a_permutation(mixed_pods) -> None:
    capacity, ratio = 16_000, 2.0
    target = ratio * capacity
    assert total_milli(mixed_pods) == 19_050  # below the target: nothing is thinned
    out = inflate(mixed_pods, capacity, ratio, np.random.default_rng(3))
    kept, clones = split_clones(out, mixed_pods)
    assert sorted(kept, key=lambda p: p.name) == sorted(mixed_pods, key=lambda p: p.name)
    assert len(clones) >= 2, "19 050 of 32 000 leaves room for several clones"
    by_name = {p.name: p for p in mixed_pods}
    for i, clone in enumerate(clones):
        original_name, _, index = clone.name.rpartition("-clone-")
        assert int(index) == i  # clones are numbered in the order they were drawn
        assert clone == replace(by_name[original_name], name=clone.name)  # a copy but for the name
    total = total_milli(out)
    assert total <= target
    assert total > target - max(gpu_milli(p) for p in mixed_pods)  # no room left for the pod drawn last
    assert len({p.name for p in out}) == len(out)


def test_inflate_below_the_trace_thins_it(mixed_pods) -> None:
    capacity, ratio = 16_000, 0.5  # target 8 000 of a trace of 19 050
    out = inflate(mixed_pods, capacity, ratio, np.random.default_rng(11))
    kept, _ = split_clones(out, mixed_pods)
    assert len(kept) < len(mixed_pods)
    assert len({p.name for p in kept}) == len(kept)  # each original at most once
    total = total_milli(out)
    assert ratio * capacity - max(gpu_milli(p) for p in mixed_pods) < total <= ratio * capacity


@pytest.mark.parametrize("ratio", [0, -1.0])
def test_inflate_with_ratio_at_most_zero_only_shuffles(mixed_pods, ratio: float) -> None:
    orders = set()
    for seed in range(5):
        out = inflate(mixed_pods, 16_000, ratio, np.random.default_rng(seed))
        assert sorted(out, key=lambda p: p.name) == sorted(mixed_pods, key=lambda p: p.name)
        orders.add(tuple(p.name for p in out))
    assert len(orders) > 1, "the pods are shuffled"


def test_inflate_is_a_function_of_the_rng_seed(mixed_pods) -> None:
    runs = [inflate(mixed_pods, 16_000, 1.3, np.random.default_rng(seed)) for seed in (5, 5, 6)]
    assert runs[0] == runs[1]
    assert [p.name for p in runs[0]] != [p.name for p in runs[2]]


def test_inflate_of_no_pods_is_empty() -> None:
    assert inflate([], 16_000, 1.3, np.random.default_rng(0)) == []


def test_inflate_leaves_a_workload_without_gpu_pods_as_it_is(make_pod) -> None:
    """A CPU-only trace requests 0 milli-GPU, so clones could never bring it to the target:
    there is nothing to inflate by, and the pods are only shuffled."""
    pods = [make_pod("c0"), make_pod("c1", cpu=4000)]
    out = inflate(pods, 16_000, 1.3, np.random.default_rng(0))
    assert sorted(p.name for p in out) == ["c0", "c1"]


# run_fill ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_shows_the_cluster_as_it_is_at_100_percent_arrived(make_node, make_pod, seed: int) -> None:
    """Once, a copy: what the pods arrived before the GPU asked passes the capacity left allocated."""
    nodes = [make_node("a", gpus=2), make_node("b", gpus=2)]
    pods = [make_pod("s0", share=600), make_pod("s1", share=700), make_pod("w0", gpus=1), make_pod("w1", gpus=2),
            make_pod("w2", gpus=1)]
    seen: list[Snapshot] = []
    result = run_fill(nodes, pods, "fgd", seed, inflation=0, at_capacity=seen.append)
    before = int(np.flatnonzero(result.arrived_milli <= result.capacity_milli)[-1])  # the last pod within 100%
    [snap] = seen
    assert result.capacity_milli - int(snap.gpu_free.clip(0).sum()) == result.allocated_milli[before]
    placed = np.diff(result.allocated_milli[: before + 1], prepend=0) > 0  # every pod here asks for GPU
    assert len(snap.assignments) == int(placed.sum())


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_of_identical_pods_by_hand(make_node, make_pod, policy: str, seed: int) -> None:
    """Five 1-GPU pods on two 2-GPU nodes: whatever the order and policy, four fit and the fifth
    fails for want of a GPU, and the run goes on to the end."""
    nodes = [make_node("a", gpus=2), make_node("b", gpus=2)]
    pods = [make_pod(f"p{i}", gpus=1) for i in range(5)]
    result = run_fill(nodes, pods, policy, seed, inflation=0)
    assert result.capacity_milli == 4000
    assert result.pods == 5
    assert result.arrived_milli.tolist() == [1000, 2000, 3000, 4000, 5000]
    assert result.allocated_milli.tolist() == [1000, 2000, 3000, 4000, 4000]
    assert result.failed == {INSUFFICIENT_GPU: 1}
    # arrived 25%, 50%, ... of capacity; allocation ratio at each
    assert result.curve() == {25: 0.25, 50: 0.5, 75: 0.75, 100: 1.0, 125: 1.0}
    assert result.summary() == {"alloc@50%": 0.5, "alloc@100%": 1.0, "final alloc": 1.0, "failed pods": 1.0,
                                "fragmentation": 0.0}
    as_dict = result.to_dict()
    assert as_dict["curve"] == {"25": 0.25, "50": 0.5, "75": 0.75, "100": 1.0, "125": 1.0}
    assert (as_dict["mode"], as_dict["policy"], as_dict["seed"], as_dict["pods"]) == ("fill", policy, seed, 5)
    assert as_dict["gpu_capacity_milli"] == 4000 and as_dict["failed_by_reason"] == {INSUFFICIENT_GPU: 1}


def best_fit_by_hand(sizes: list[int], free: list[int]) -> tuple[list[int], int]:
    """Whole-GPU pods on nodes with ``free`` GPUs, each to the fullest node it fits: allocated
    milli after each pod, and how many fit nowhere."""
    free, allocated, failed, total = list(free), [], 0, 0
    for size in sizes:
        fitting = [i for i, f in enumerate(free) if f >= size]
        if fitting:
            node = min(fitting, key=lambda i: free[i])
            free[node] -= size
            total += size * 1000
        else:
            failed += 1
        allocated.append(total)
    return allocated, failed


def test_fill_outcome_follows_the_seeded_order(make_node, make_pod) -> None:
    """One 2-GPU pod and three 1-GPU pods on two 2-GPU nodes with bestfit: if the big pod comes
    last the small ones have split the nodes and it fails (3 000 placed), otherwise a small one
    fails (4 000 placed). The order comes from the seed; the outcome is checked for each order."""
    nodes = [make_node("a", gpus=2), make_node("b", gpus=2)]
    pods = [make_pod("big", gpus=2)] + [make_pod(f"s{i}", gpus=1) for i in range(3)]
    orders, finals = set(), set()
    for seed in range(10):
        result = run_fill(nodes, pods, "bestfit", seed, inflation=0)
        sizes = (np.diff(np.r_[0, result.arrived_milli]) // 1000).tolist()
        assert sorted(sizes) == [1, 1, 1, 2]  # every pod arrives once, no clone
        allocated, failed = best_fit_by_hand(sizes, [2, 2])
        assert result.allocated_milli.tolist() == allocated, f"seed {seed}, order {sizes}"
        assert result.failed == {INSUFFICIENT_GPU: failed}
        orders.add(tuple(sizes))
        finals.add(allocated[-1])
    assert len(orders) > 1, "different seeds give different orders"
    assert finals == {3000, 4000}


def test_fill_counts_every_failure_by_reason_and_goes_on(make_node, make_pod) -> None:
    nodes = [make_node("a", gpus=2, cpu=32_000), make_node("b", gpus=2, cpu=32_000)]
    pods = [make_pod("huge-cpu", cpu=64_000), make_pod("g0", gpus=1), make_pod("g1", gpus=1),
            make_pod("g2", gpus=2), make_pod("too-many-gpus", gpus=3)]
    for seed in range(4):
        result = run_fill(nodes, pods, "bestfit", seed, inflation=0)
        assert result.failed == {"Insufficient cpu": 1, INSUFFICIENT_GPU: 1}
        assert result.pods == 5
        assert result.arrived_milli[-1] == 7000 and result.allocated_milli[-1] == 4000
        assert result.summary()["failed pods"] == 2.0
        # each arrival adds what it asks to the arrived workload, and to the allocation only if placed
        step_arrived = np.diff(np.r_[0, result.arrived_milli])
        step_allocated = np.diff(np.r_[0, result.allocated_milli])
        assert ((step_allocated == step_arrived) | (step_allocated == 0)).all()


def test_capacity_counts_every_gpu_of_the_cluster(make_node, make_pod) -> None:
    nodes = [make_node("big", gpus=8), make_node("small", gpus=2), make_node("cpu")]
    result = run_fill(nodes, [make_pod("p", gpus=1)], "default", 0, inflation=0)
    assert result.capacity_milli == 10_000
    assert result.allocated_milli.tolist() == [1000]


def test_fill_with_inflation_adds_clones_up_to_the_target(make_node, make_pod) -> None:
    nodes = [make_node("a", gpus=2), make_node("b", gpus=2)]
    pods = [make_pod("one", gpus=1), make_pod("half", share=500)]
    result = run_fill(nodes, pods, "fgd", 3, inflation=1.3)
    arrived = result.arrived_milli[-1]
    assert 1.3 * 4000 - 1000 < arrived <= 1.3 * 4000
    assert result.pods > 2
    assert result.allocated_milli[-1] <= result.capacity_milli
    assert (np.diff(result.arrived_milli) >= 0).all() and (np.diff(result.allocated_milli) >= 0).all()


def test_curve_and_summary_by_hand() -> None:
    """Capacity 1 000: arrived 4, 8, 12 and 16 milli are 0.4, 0.8, 1.2, 1.6 % (rounding to 0, 1,
    1, 2), then 99.6, 100 and 100.4 % all round to 100 and 130 % is 130."""
    result = FillResult(policy="p", seed=1, inflation=1.3, capacity_milli=1000,
                        arrived_milli=np.array([4, 8, 12, 16, 996, 1000, 1004, 1300]),
                        allocated_milli=np.array([4, 8, 8, 16, 900, 910, 920, 920]),
                        failed={"Insufficient cpu": 1, INSUFFICIENT_GPU: 2}, fragmented_milli=50.0)
    curve = result.curve()
    assert list(curve) == [0, 1, 2, 100, 130]
    assert curve[0] == pytest.approx(0.004)
    assert curve[1] == pytest.approx(0.008)  # mean of 8/1000 and 8/1000
    assert curve[2] == pytest.approx(0.016)
    assert curve[100] == pytest.approx((0.900 + 0.910 + 0.920) / 3)
    assert curve[130] == pytest.approx(0.920)
    assert result.summary() == {"alloc@100%": 0.91, "alloc@130%": 0.92, "final alloc": 0.92, "failed pods": 3.0,
                                "fragmentation": 0.05}  # no arrival near 50% or 80%: no such keys
    assert result.to_dict()["curve"] == {"0": 0.004, "1": 0.008, "2": 0.016, "100": 0.91, "130": 0.92}
    assert result.to_dict()["pods"] == 8


@pytest.mark.parametrize("policy", ["fgd", "random"])
def test_fill_same_seed_same_result(policy: str) -> None:
    nodes, pods = synthetic_cluster(), synthetic_workload(300, 1)
    first, again = (run_fill(nodes, pods, policy, 5, 1.3) for _ in range(2))
    assert np.array_equal(first.arrived_milli, again.arrived_milli)
    assert np.array_equal(first.allocated_milli, again.allocated_milli)
    assert first.to_dict() == again.to_dict()
    other = run_fill(nodes, pods, policy, 6, 1.3)
    assert not np.array_equal(first.arrived_milli, other.arrived_milli) or first.pods != other.pods


def test_fill_on_openb(openb: Path) -> None:
    nodes = openb_reader.read_nodes(openb / "openb_node_list_gpu_node.csv")
    pods = [a.pod for a in read_trace(openb / "openb_pod_list_default.csv")]
    result = run_fill(nodes, pods, "bestfit", 42, inflation=1.3)
    assert result.capacity_milli == 6_212_000
    assert 1.29 <= result.arrived_milli[-1] / result.capacity_milli <= 1.30
    assert result.curve()[100] > 0.9
    assert (result.allocated_milli <= result.capacity_milli).all()


# run_timeline ------------------------------------------------------------------------------------

def at(pod, time, duration):
    return Arrival(pod, float(time), None if duration is None else float(duration))


def records(result):
    return {p.name.split("/")[-1]: p for p in result.pods}


def test_pod_waits_until_capacity_frees(make_node, make_pod) -> None:
    """One GPU: A (t 0, 100 s) holds it; B (t 10, 50 s) waits until A leaves at 100, ends at 150."""
    nodes = [make_node("n", gpus=1)]
    result = run_timeline(nodes, [at(make_pod("a", gpus=1), 0, 100), at(make_pod("b", gpus=1), 10, 50)], "default", 0)
    a, b = records(result)["a"], records(result)["b"]
    assert (a.arrival, a.start, a.end, a.wait, a.completion) == (0.0, 0.0, 100.0, 0.0, 100.0)
    assert (b.arrival, b.start, b.end, b.wait, b.completion) == (10.0, 100.0, 150.0, 90.0, 140.0)
    assert result.waits() == [0.0, 90.0] and result.completions() == [100.0, 140.0]
    assert [(s.time, s.gpu_allocated, s.pending) for s in result.samples] == [
        (0.0, 1.0, 0), (10.0, 1.0, 1), (100.0, 1.0, 0), (150.0, 0.0, 0)]
    assert result.failed == {}


def test_pod_that_never_fits_stays_unstarted_with_a_reason(make_node, make_pod) -> None:
    nodes = [make_node("n", gpus=1)]
    arrivals = [at(make_pod("two", gpus=2), 0, 10), at(make_pod("one", gpus=1), 5, 10)]
    result = run_timeline(nodes, arrivals, "bestfit", 0)
    two, one = records(result)["two"], records(result)["one"]
    assert (two.start, two.end, two.wait, two.completion) == (None, None, None, None)
    assert two.reason == INSUFFICIENT_GPU
    assert (one.start, one.end, one.reason) == (5.0, 15.0, "")  # the run goes on past it
    assert result.failed == {INSUFFICIENT_GPU: 1}
    assert result.summary()["never started"] == 1.0 and result.summary()["started"] == 1.0
    assert result.to_dict()["failed_by_reason"] == {INSUFFICIENT_GPU: 1}
    assert result.samples[-1].pending == 1


def test_departure_at_the_arrival_instant_comes_first(make_node, make_pod) -> None:
    """A leaves at 100 just as C arrives at 100: C starts at once, without waiting. C is listed
    first in the trace: arrivals are taken by time, not by list order."""
    nodes = [make_node("n", gpus=1)]
    result = run_timeline(nodes, [at(make_pod("c", gpus=1), 100, 10), at(make_pod("a", gpus=1), 0, 100)], "default", 0)
    c = records(result)["c"]
    assert (c.start, c.wait, c.end) == (100.0, 0.0, 110.0)
    assert [(s.time, s.gpu_allocated, s.pending) for s in result.samples] == [
        (0.0, 1.0, 0), (100.0, 1.0, 0), (110.0, 0.0, 0)]  # one sample per instant


def test_newcomer_sees_capacity_freed_at_its_arrival_instant(make_node, make_pod) -> None:
    """A leaves the 1-GPU node at 100 as C (1 GPU) arrives. Departures first: bestfit puts C in
    the freed, tighter node, so D (2 GPUs, t 101) finds the 2-GPU node idle and starts at once.
    Were C placed before A's departure, it would take the 2-GPU node and D would wait."""
    nodes = [make_node("one", gpus=1), make_node("two", gpus=2)]
    arrivals = [at(make_pod("a", gpus=1), 0, 100), at(make_pod("c", gpus=1), 100, 1000),
                at(make_pod("d", gpus=2), 101, 10)]
    for seed in range(3):  # node order is shuffled by the seed: the outcome must not depend on it
        result = records(run_timeline(nodes, arrivals, "bestfit", seed))
        assert (result["c"].start, result["d"].start) == (100.0, 101.0)


def test_pods_without_duration_never_leave(make_node, make_pod) -> None:
    nodes = [make_node("n", gpus=1)]
    result = run_timeline(nodes, [at(make_pod("forever", gpus=1), 0, None), at(make_pod("b", gpus=1), 5, 10)],
                          "default", 0)
    forever, b = records(result)["forever"], records(result)["b"]
    assert (forever.start, forever.end, forever.completion) == (0.0, None, None)
    assert b.start is None and b.reason == INSUFFICIENT_GPU
    assert result.samples[-1].time == 5.0 and result.samples[-1].gpu_allocated == 1.0
    assert result.completions() == []


def test_timeline_needs_arrival_times(make_node, make_pod) -> None:
    nodes = [make_node("n", gpus=1)]
    arrivals = [at(make_pod("ok", gpus=1), 0, 10), Arrival(make_pod("untimed", gpus=1), None, 10.0)]
    with pytest.raises(TraceTimeError, match="untimed"):
        run_timeline(nodes, arrivals, "default", 0)
    assert issubclass(TraceTimeError, ValueError)


def test_samples_and_time_weighted_mean_by_hand(make_node, make_pod) -> None:
    """One node, 2 GPUs (2 000 milli), 32 cores:

    t  0  A (1 GPU)  starts   1 000 -> 0.50      t 30  A leaves        500 -> 0.25
    t 10  B (share 500) starts 1 500 -> 0.75     t 40  C (1 GPU) starts 1 500 -> 0.75
                                                  t 50  C leaves        500 -> 0.25 (B never leaves)

    Mean from the first arrival (0) to the last (40): (0.5*10 + 0.75*20 + 0.25*10) / 40 = 0.5625.
    """
    nodes = [make_node("n", gpus=2, cpu=32_000)]
    arrivals = [at(make_pod("a", gpus=1), 0, 30), at(make_pod("b", share=500), 10, None),
                at(make_pod("c", gpus=1), 40, 10)]
    result = run_timeline(nodes, arrivals, "fgd", 0)
    assert [s.time for s in result.samples] == [0.0, 10.0, 30.0, 40.0, 50.0]
    assert [s.gpu_allocated for s in result.samples] == [0.5, 0.75, 0.25, 0.75, 0.25]
    assert [s.cpu_allocated for s in result.samples] == [1 / 32, 2 / 32, 1 / 32, 2 / 32, 1 / 32]
    assert all(s.pending == 0 for s in result.samples)
    assert result.mean_gpu_allocation() == pytest.approx(0.5625)
    assert result.summary()["mean GPU alloc"] == 0.5625


def test_mean_allocation_when_everything_arrives_at_once(make_node, make_pod) -> None:
    nodes = [make_node("n", gpus=4)]
    arrivals = [at(make_pod(f"p{i}", gpus=1), 7, 10 * (i + 1)) for i in range(3)]
    assert run_timeline(nodes, arrivals, "default", 0).mean_gpu_allocation() == 0.75


@pytest.mark.parametrize(
    ("first", "then"),
    [pytest.param(["d"], ["b", "c"], id="big-arrived-first"), pytest.param(["b", "c"], ["d"], id="small-arrived-first")],
)
def test_waiting_pods_are_retried_in_arrival_order(make_node, make_pod, first, then) -> None:
    """A holds both GPUs until 100. D (2 GPUs) and B, C (1 GPU each) wait; when A leaves, the ones
    that arrived first get the GPUs and the others wait 10 s more."""
    nodes = [make_node("n", gpus=2)]
    arrival_order = first + then
    pods = {"d": make_pod("d", gpus=2), "b": make_pod("b", gpus=1), "c": make_pod("c", gpus=1)}
    arrivals = [at(make_pod("a", gpus=2), 0, 100)] + [at(pods[name], 1 + i, 10) for i, name in enumerate(arrival_order)]
    result = records(run_timeline(nodes, arrivals, "default", 0))
    assert {name: result[name].start for name in first} == {name: 100.0 for name in first}
    assert {name: result[name].start for name in then} == {name: 110.0 for name in then}


def test_a_waiting_pod_that_does_not_fit_does_not_block_later_ones(make_node, make_pod) -> None:
    """A1 leaves at 100, freeing one GPU: D (2 GPUs, first in the queue) still does not fit, B (1
    GPU) does and starts at 100; D starts when A2 leaves at 200."""
    nodes = [make_node("n", gpus=2)]
    arrivals = [at(make_pod("a1", gpus=1), 0, 100), at(make_pod("a2", gpus=1), 0, 200),
                at(make_pod("d", gpus=2), 1, 10), at(make_pod("b", gpus=1), 2, 50)]
    result = records(run_timeline(nodes, arrivals, "bestfit", 0))
    assert (result["b"].start, result["b"].end) == (100.0, 150.0)
    assert (result["d"].start, result["d"].end) == (200.0, 210.0)


def test_retry_tells_pods_apart_by_node_selector(make_node, make_pod) -> None:
    """Two waiting pods with equal requests but different selectors: when pool x frees, the first
    (pool y) does not fit there, and the second (pool x) must still be tried and start."""
    nodes = [make_node("nx", gpus=1, labels={"pool": "x"}), make_node("ny", gpus=1, labels={"pool": "y"})]
    arrivals = [
        at(make_pod("hold-x", gpus=1, node_selector={"pool": "x"}), 0, 100),
        at(make_pod("hold-y", gpus=1, node_selector={"pool": "y"}), 0, 500),
        at(make_pod("want-y", gpus=1, node_selector={"pool": "y"}), 1, 10),
        at(make_pod("want-x", gpus=1, node_selector={"pool": "x"}), 2, 10),
    ]
    result = records(run_timeline(nodes, arrivals, "default", 0))
    assert result["want-x"].start == 100.0
    assert result["want-y"].start == 500.0


def test_equal_pods_queued_behind_each_other_all_start(make_node, make_pod) -> None:
    """Three equal 1-GPU pods wait for a 2-GPU holder: two start when it leaves (the third does
    not fit), the third when the first of them leaves."""
    nodes = [make_node("n", gpus=2)]
    arrivals = [at(make_pod("hold", gpus=2), 0, 100)] + [at(make_pod(f"w{i}", gpus=1), 1 + i, 10 * (i + 1))
                                                          for i in range(3)]
    result = records(run_timeline(nodes, arrivals, "default", 0))
    assert [result[f"w{i}"].start for i in range(3)] == [100.0, 100.0, 110.0]


@pytest.mark.parametrize("policy", ["fgd", "random"])
def test_timeline_same_seed_same_result(policy: str) -> None:
    nodes, arrivals = synthetic_cluster(), synthetic_arrivals(400, 7)
    first, again = (run_timeline(nodes, arrivals, policy, 3) for _ in range(2))
    assert first.to_dict() == again.to_dict()
    assert first.pods == again.pods
    assert first.samples == again.samples
    assert len(first.pods) == 400 and len({p.name for p in first.pods}) == 400


# Property: the samples agree with the pod records, and nothing is ever overcommitted ---------

@st.composite
def scenarios(draw):
    nodes = [dict(name=f"n{i}", gpus=draw(st.sampled_from([0, 1, 2, 4])), cpu=draw(st.sampled_from([4000, 8000])))
             for i in range(draw(st.integers(1, 3)))]
    pods = []
    for i in range(draw(st.integers(1, 10))):
        gpu = draw(st.one_of(st.just({}), st.builds(lambda m: {"share": m}, st.integers(1, 9).map(lambda k: 100 * k)),
                             st.builds(lambda n: {"gpus": n}, st.integers(1, 4))))
        cpu = draw(st.sampled_from([500, 1000, 2000, 4000]))
        time = draw(st.integers(0, 20))
        duration = draw(st.one_of(st.none(), st.integers(0, 20)))
        pods.append((dict(name=f"p{i}", cpu=cpu, **gpu), time, duration))
    return nodes, pods, draw(st.sampled_from(POLICIES)), draw(st.integers(0, 3))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_timeline_samples_agree_with_pod_records(make_node, make_pod, scenario) -> None:
    node_specs, pod_specs, policy, seed = scenario
    nodes = [make_node(**spec) for spec in node_specs]
    arrivals = [at(make_pod(**spec), time, duration) for spec, time, duration in pod_specs]
    result = run_timeline(nodes, arrivals, policy, seed)
    gpu_capacity = 1000 * sum(spec["gpus"] for spec in node_specs)
    cpu_capacity = sum(spec["cpu"] for spec in node_specs)
    by_name = {a.pod.key: a for a in arrivals}

    for record in result.pods:
        arrival = by_name[record.name]
        if record.start is None:
            assert record.end is None and record.reason
            continue
        assert record.start >= record.arrival and record.reason == ""
        if arrival.duration is None:
            assert record.end is None
        else:
            assert record.end == record.start + arrival.duration

    times = [s.time for s in result.samples]
    assert times == sorted(set(times)), "one sample per instant, in time order"
    event_times = {r.arrival for r in result.pods} | {r.end for r in result.pods if r.end is not None}
    assert set(times) == event_times

    for sample in result.samples:
        t = sample.time
        running = [by_name[r.name].pod for r in result.pods
                   if r.start is not None and r.start <= t and (r.end is None or t < r.end)]
        gpu_used = sum(gpu_milli(p) for p in running)
        cpu_used = sum(p.requests["cpu"] for p in running)
        assert gpu_used <= gpu_capacity and cpu_used <= cpu_capacity
        assert math.isclose(sample.gpu_allocated * max(gpu_capacity, 1), gpu_used, abs_tol=1e-6)
        assert math.isclose(sample.cpu_allocated * cpu_capacity, cpu_used, abs_tol=1e-6)
        pending = sum(1 for r in result.pods if r.arrival <= t and (r.start is None or r.start > t))
        assert sample.pending == pending
    assert sum(result.failed.values()) == sum(1 for r in result.pods if r.start is None)
    assert Counter(r.reason for r in result.pods if r.start is None) == Counter(result.failed)
