"""Properties of placement over generated clusters and sequences of place/release operations.

After every step the snapshot's arrays must agree with what the assignments add up to; every
decision must be one the filters (and a brute-force check through ``Snapshot.assign``) allow; a
decision must not touch the snapshot; equal inputs and seed must give identical decisions. A node
replaced in place (labels, taints, GPU model) must leave the snapshot deciding as one built anew.
``Snapshot.assign`` given explicit GPU lists must take exactly what fits and refuse the rest
(overcommitted or repeated GPUs, shares that do not fit, indices out of range) unchanged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.model.cluster import UNSCHEDULABLE_TAINT, Taint, TaintEffect
from scheduler.model.resources import MILLI_PER_GPU, PODS
from scheduler.model.snapshot import GPU_AFFINITY, PIPELINE, OvercommitError, Snapshot, gpu_affinity
from scheduler.placement.decision import Placement, Unschedulable
from scheduler.placement.engine import Placer
from scheduler.placement.filters import run_filters
from scheduler.placement.profile import build_profile, profile_names
from scheduler.placement.workload import TargetWorkload

GiB = 2**30
POLICIES = profile_names()  # "default" and every registered policy
FLUID = "fluid.io/s-default-d1"
MAX_NODES = 5

nodes_st = st.lists(
    st.fixed_dictionaries({
        "cpu": st.sampled_from([2000, 4000, 8000, 16_000]),
        "memory": st.sampled_from([4 * GiB, 8 * GiB, 16 * GiB]),
        "gpus": st.sampled_from([0, 1, 2, 4, 8]),
        "model": st.sampled_from(["A100", "V100", None]),
        "pods": st.integers(2, 8),
        "labels": st.sampled_from([{}, {FLUID: "true"}]),
    }),
    min_size=1, max_size=MAX_NODES,
)
common = {
    "cpu": st.sampled_from([0, 500, 1000, 3000]),
    "memory": st.sampled_from([0, GiB, 3 * GiB]),
    "pipeline": st.sampled_from([None, "p1", "p2"]),
    "datasets": st.sampled_from([(), ("d1",)]),
}
models_st = st.sampled_from([None, "A100", "V100", "A100|V100"])
pod_st = st.one_of(
    st.fixed_dictionaries(common),
    st.fixed_dictionaries({**common, "share": st.integers(1, MILLI_PER_GPU - 1), "models": models_st}),
    st.fixed_dictionaries({**common, "gpus": st.integers(1, 4), "models": models_st}),
)
among_st = st.one_of(st.none(), st.lists(st.integers(0, MAX_NODES - 1), unique=True))
# Explicit GPU lists for ``Snapshot.assign``, made against the node's state when applied: the
# default choice (valid when the pod fits), that choice with one GPU swapped for the node's
# fullest GPU (an overcommit, or a share that does not fit, unless it has room), with a repeated
# index, with an index past the node's GPUs or negative; or a list as drawn.
RECIPES = ("default", "default", "fullest", "fullest", "repeat", "past-end", "negative")
gpus_st = st.one_of(st.sampled_from(RECIPES), st.lists(st.integers(-1, 8), max_size=4))
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("place"), pod_st, st.sampled_from(POLICIES), among_st),
        st.tuples(st.just("place"), pod_st, st.sampled_from(POLICIES), st.none()),
        st.tuples(st.just("assign"), pod_st, st.integers(0, MAX_NODES - 1), gpus_st),
        st.tuples(st.just("release"), st.integers(0, 50)),
    ),
    min_size=2, max_size=16,
)

STATE = ("free", "gpu_free", "gpu_idle", "gpu_whole_free", "gpu_most_free")


def state(snap: Snapshot, extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    return {name: getattr(snap, name).copy() for name in (*STATE, *extra)}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def fits(snap: Snapshot, pod, i: int) -> bool:
    """Brute force: the node's GPU model is allowed and the snapshot accepts the pod there."""
    gpu, node = pod.gpu, snap.nodes[i]
    if gpu is not None and gpu.models is not None and node.gpu_count and node.gpu_model not in gpu.models:
        return False
    try:
        snap.copy().assign(pod, i)
    except OvercommitError:
        return False
    return True


def check_decision(snap: Snapshot, pod, decision, subset) -> None:
    considered = list(range(len(snap))) if subset is None else subset.tolist()
    result = run_filters(snap, pod, among=subset)
    feasible = result.feasible.tolist()
    assert feasible == [i for i in considered if fits(snap, pod, i)]
    rejected = {snap.names[i] for i in considered if i not in feasible}
    assert set(result.rejections.by_node()) == rejected
    assert result.rejections.considered == len(considered)
    if isinstance(decision, Placement):
        i = decision.node_index
        assert i in feasible and decision.node == snap.names[i] and decision.feasible == len(feasible)
        assert decision.pod is pod
        count = pod.gpu.count if pod.gpu is not None else 0
        assert len(decision.gpus) == len(set(decision.gpus)) == count
        for g in decision.gpus:
            assert 0 <= g < snap.gpu_count[i] and snap.gpu_free[i, g] >= pod.gpu.milli
        assert np.isfinite(decision.score) and all(0 <= s <= 100 for _, s in decision.scores)
    else:
        assert isinstance(decision, Unschedulable)
        assert feasible == []
        assert decision.message.startswith(f"0/{len(considered)} nodes are available")


def assign_allowed(snap: Snapshot, pod, i: int, gpus: list[int]) -> bool:
    """Brute force from the assignments alone: the node has the pod's scalars free, and ``gpus``
    are ``count`` distinct GPUs of the node, each with the pod's share still free."""
    demand = snap.demand(pod)
    used = np.zeros(len(snap.columns), dtype=np.int64)
    gpu_used = Counter()
    for a in snap.assignments.values():
        if a.node == i:
            d = snap.demand(a.pod)
            used[d.columns] += d.amounts
            gpu_used.update({g: a.pod.gpu.milli for g in a.gpus})
    if demand.unknown or (demand.amounts > (snap.allocatable[:, i] - used)[demand.columns]).any():
        return False
    if pod.gpu is None:
        return not gpus
    return (len(gpus) == pod.gpu.count and len(set(gpus)) == len(gpus)
            and all(0 <= g < snap.nodes[i].gpu_count and MILLI_PER_GPU - gpu_used[g] >= pod.gpu.milli for g in gpus))


def explicit_gpus(snap: Snapshot, pod, i: int, recipe: str | list[int]) -> list[int]:
    """The GPU list a recipe (see ``RECIPES``) makes for ``pod`` on node ``i`` now."""
    if not isinstance(recipe, str):
        return recipe
    if pod.gpu is None and recipe == "default":
        return []
    count = pod.gpu.count if pod.gpu is not None else 1
    gpus = list(snap.default_gpus(pod, i)) or list(range(count))
    real = snap.gpu_free[i, : snap.gpu_count[i]]
    swap = {"fullest": int(np.argmin(real)) if len(real) else 0, "repeat": gpus[0],
            "past-end": int(snap.gpu_count[i]), "negative": -1}.get(recipe)
    if swap is not None:
        gpus[-1] = swap
        if recipe == "repeat" and len(gpus) == 1:
            gpus.append(swap)
    return gpus


def check_assign(snap: Snapshot, pod, i: int, gpus: list[int]) -> None:
    """``assign`` with explicit GPUs takes exactly what the pod asks where that fits, else
    refuses with a ValueError and changes nothing."""
    before, keys = state(snap, ("version",)), dict(snap.assignments)
    if not assign_allowed(snap, pod, i, gpus):
        with pytest.raises(ValueError):
            snap.assign(pod, i, gpus)
        assert same(state(snap, ("version",)), before) and dict(snap.assignments) == keys
        return
    snap.assign(pod, i, gpus)
    demand = snap.demand(pod)
    expected_free = before["free"].copy()
    expected_free[demand.columns, i] -= demand.amounts
    expected_gpu = before["gpu_free"].copy()
    expected_gpu[i, gpus] -= pod.gpu.milli if pod.gpu else 0
    assert np.array_equal(snap.free, expected_free) and np.array_equal(snap.gpu_free, expected_gpu)
    # A version never seen before: FGD's per-state cache, shared by copies, relies on it.
    assert snap.assignments[pod.key].gpus == tuple(gpus) and snap.version[i] > before["version"].max()


def check_invariants(snap: Snapshot) -> None:
    assert (snap.free >= 0).all() and (snap.free <= snap.allocatable).all()
    g = snap.gpu_free
    real = np.arange(g.shape[1]) < snap.gpu_count[:, None]
    assert ((g >= 0) & (g <= MILLI_PER_GPU))[real].all() and (g[~real] == -1).all()
    assert np.array_equal(snap.gpu_idle, np.where(real, g, 0).sum(axis=1))
    assert np.array_equal(snap.gpu_whole_free, (real & (g == MILLI_PER_GPU)).sum(axis=1))
    assert np.array_equal(snap.gpu_most_free, g.max(axis=1))
    # Recompute everything from the assignments alone.
    used = np.zeros_like(snap.free)
    gpu_used = np.zeros_like(g)
    tallies: Counter = Counter()
    for a in snap.assignments.values():
        demand = snap.demand(a.pod)
        np.add.at(used, (demand.columns, a.node), demand.amounts)
        count = a.pod.gpu.count if a.pod.gpu is not None else 0
        assert len(a.gpus) == len(set(a.gpus)) == count
        for gi in a.gpus:
            gpu_used[a.node, gi] += a.pod.gpu.milli
        if a.pod.pipeline:
            tallies[PIPELINE, a.pod.pipeline, a.node] += 1
        if a.pod.gpu is not None:
            tallies[GPU_AFFINITY, gpu_affinity(a.pod.gpu), a.node] += 1
    assert np.array_equal(snap.free, snap.allocatable - used)
    # every pod takes one of its node's pod slots
    per_node = np.bincount([a.node for a in snap.assignments.values()], minlength=len(snap))
    assert np.array_equal(snap.free[snap.column[PODS]], snap.allocatable[snap.column[PODS]] - per_node)
    assert np.array_equal(g[real], (MILLI_PER_GPU - gpu_used)[real])
    for category in (PIPELINE, GPU_AFFINITY):
        values = {v for c, v, _ in tallies if c == category}
        for v in values:
            assert snap.tally(category, v).tolist() == [tallies[category, v, i] for i in range(len(snap))]
        distinct = [len({v for c, v, n in tallies if c == category and n == i}) for i in range(len(snap))]
        assert snap.distinct(category).tolist() == distinct


def describe(decision) -> str:
    if isinstance(decision, Placement):
        return repr((decision.pod.key, decision.node, decision.node_index, decision.gpus, decision.score,
                     decision.scores, decision.feasible))
    return repr((decision.pod.key, decision.message, decision.rejections.by_node()))


def simulate(nodes, ops, seed, make_pod, check: bool) -> tuple[Snapshot, list[str]]:
    pods = {k: make_pod(f"p{k}", **op[1]) for k, op in enumerate(ops) if op[0] in ("place", "assign")}
    workload = TargetWorkload.from_pods(list(pods.values()) or [make_pod(gpus=1)])
    placers: dict[str, Placer] = {}
    snap = Snapshot(nodes)
    placed: list[str] = []
    record: list[str] = []
    for k, op in enumerate(ops):
        before = state(snap, ("version",))
        twin = snap.copy()
        if op[0] == "place":
            _, _, policy, among = op
            if policy not in placers:
                placers[policy] = Placer(build_profile(policy, seed=seed, workload=workload))
            subset = None if among is None else np.array(sorted(i for i in among if i < len(nodes)), dtype=np.int64)
            pod = pods[k]
            decision = placers[policy].decide(snap, pod, subset)
            record.append(describe(decision))
            if check:
                assert same(state(snap, ("version",)), before), "decide changed the snapshot"
                check_decision(snap, pod, decision, subset)
            if isinstance(decision, Placement):
                snap.assign(pod, decision.node_index, decision.gpus)
                placed.append(pod.key)
        elif op[0] == "assign":
            pod, i = pods[k], op[2] % len(nodes)
            gpus = explicit_gpus(snap, pod, i, op[3])
            if check:
                check_assign(snap, pod, i, gpus)
            else:
                try:
                    snap.assign(pod, i, gpus)
                except ValueError:
                    pass
            if pod.key in snap.assignments:
                placed.append(pod.key)
            record.append(f"assign {pod.key} {pod.key in snap.assignments}")
        elif placed:
            key = placed.pop(op[1] % len(placed))
            snap.release(key)
            record.append(f"release {key}")
        if check:
            assert same(state(twin, ("version",)), before), "changing a snapshot changed its copy"
            check_invariants(snap)
    return snap, record


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cluster=nodes_st, ops=ops_st, seed=st.integers(0, 2**16))
def test_operations_keep_the_snapshot_exact(make_node, make_pod, cluster, ops, seed):
    nodes = [make_node(f"n{i}", **spec) for i, spec in enumerate(cluster)]
    snap, _ = simulate(nodes, ops, seed, make_pod, check=True)
    fresh = state(Snapshot(nodes))

    # Releasing everything in a copy restores it exactly, and leaves the original alone.
    kept = state(snap, ("version",))
    twin = snap.copy()
    for key in list(twin.assignments):
        twin.release(key)
    assert same(state(twin), fresh)
    assert same(state(snap, ("version",)), kept), "changing a copy changed its original"
    # A node the copy changed has a version the original never had: one version, one state.
    changed = sorted({a.node for a in snap.assignments.values()})
    assert not np.isin(twin.version[changed], snap.version).any()
    for category in (PIPELINE, GPU_AFFINITY):
        assert not twin.distinct(category).any()

    for key in list(snap.assignments):
        snap.release(key)
    assert same(state(snap), fresh)
    assert not snap.assignments


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=nodes_st, ops=ops_st, seed=st.integers(0, 2**16))
def test_same_seed_and_inputs_give_identical_decisions(make_node, make_pod, cluster, ops, seed):
    nodes = [make_node(f"n{i}", **spec) for i, spec in enumerate(cluster)]
    _, first = simulate(nodes, ops, seed, make_pod, check=False)
    _, second = simulate(nodes, ops, seed, make_pod, check=False)
    assert first == second


NODE_CHANGES = ("cordon", "uncordon", "fluid", "model")
changes_st = st.lists(st.tuples(st.integers(0, MAX_NODES - 1), st.sampled_from(NODE_CHANGES)), min_size=1, max_size=4)


def changed(node, change: str):
    """``node`` cordoned, uncordoned, with the dataset cache label toggled, or with another GPU model."""
    if change == "cordon":
        return replace(node, taints=(Taint(UNSCHEDULABLE_TAINT, "", TaintEffect.NO_SCHEDULE),))
    if change == "uncordon":
        return replace(node, taints=())
    if change == "fluid":
        return replace(node, labels={} if FLUID in node.labels else {FLUID: "true"})
    return replace(node, gpu_model="V100" if node.gpu_model == "A100" else "A100") if node.gpu_count else node


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cluster=nodes_st, ops=ops_st, changes=changes_st, probe=pod_st, seed=st.integers(0, 2**16))
def test_a_node_replaced_in_place_decides_as_a_snapshot_built_anew(make_node, make_pod, cluster, ops, changes,
                                                                     probe, seed):
    nodes = [make_node(f"n{i}", **spec) for i, spec in enumerate(cluster)]
    snap, _ = simulate(nodes, ops, seed, make_pod, check=False)
    pod = make_pod("probe", **probe)
    workload = TargetWorkload.from_pods([pod, make_pod(gpus=1, models="V100")])
    # Two placers per policy, each having decided once on the snapshot as it was (FGD keeps node
    # states by snapshot and version, random advances its generator): one goes on with the snapshot
    # changed in place, the other with one built anew from the changed nodes.
    kept = {policy: Placer(build_profile(policy, seed=seed, workload=workload)) for policy in POLICIES}
    anew = {policy: Placer(build_profile(policy, seed=seed, workload=workload)) for policy in POLICIES}
    for policy in POLICIES:
        kept[policy].decide(snap, pod)
        anew[policy].decide(snap, pod)
    before = snap.copy()
    current = list(nodes)
    for i, change in changes:
        i %= len(nodes)
        current[i] = changed(current[i], change)
        snap.replace_node(current[i])
    fresh = Snapshot(current)
    for a in snap.assignments.values():
        fresh.assign(a.pod, a.node, a.gpus)
    assert same(state(snap), state(fresh))
    assert snap.nodes == fresh.nodes and snap.taints == fresh.taints
    assert np.array_equal(snap.taint_matrix, fresh.taint_matrix)
    assert [snap.gpu_models[c] if c >= 0 else None for c in snap.gpu_model] == [nd.gpu_model for nd in current]
    for policy in POLICIES:
        assert describe(kept[policy].decide(snap, pod)) == describe(anew[policy].decide(fresh, pod)), policy
    # The copy taken before keeps the nodes and indexes it had.
    original = Snapshot(nodes)
    assert before.nodes == original.nodes and np.array_equal(before.taint_matrix, original.taint_matrix)
    assert np.array_equal(before.gpu_model, original.gpu_model)
    with pytest.raises(ValueError, match="allocatable"):
        snap.replace_node(replace(current[0], allocatable=current[0].allocatable + current[0].allocatable))
