"""``fill`` runs: the method of the FGD paper ("Beware of Fragmentation", USENIX ATC '23).

The trace's pods are shuffled with the run's seed, then clones drawn uniformly (with replacement)
from the original pods are appended until the requested GPU would pass ``inflation`` times the
cluster's GPU capacity. Pods arrive one by one and never leave; a pod that fits nowhere is
counted as failed and the run goes on. After every arrival the run records the arrived workload
(GPU requested so far, placed or not) and the GPU allocated, both in milli-GPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from scheduler.model.cluster import Node, Pod
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from scheduler.placement.workload import TargetWorkload
from simulator.measure import ClusterGauge, failure_reason, gpu_milli
from simulator.results import FillResult

Progress = Callable[[int], None]


def inflate(pods: Sequence[Pod], capacity_milli: int, ratio: float, rng: np.random.Generator) -> list[Pod]:
    """The pods shuffled, then grown with clones (or thinned at random) until the GPU they
    request is as close to ``ratio`` x ``capacity_milli`` as whole pods allow without passing it.
    ``ratio <= 0``, or a workload without GPU pods, is only shuffled."""
    shuffled = [pods[i] for i in rng.permutation(len(pods))]
    if ratio <= 0 or not any(p.gpu for p in pods):  # nothing to inflate by
        return shuffled
    target = ratio * capacity_milli
    total = sum(gpu_milli(p) for p in shuffled)
    while total > target:
        total -= gpu_milli(shuffled.pop(int(rng.integers(len(shuffled)))))
    clones = 0
    while True:
        original = pods[int(rng.integers(len(pods)))]
        if total + gpu_milli(original) > target:
            return shuffled
        shuffled.append(replace(original, name=f"{original.name}-clone-{clones}"))
        total += gpu_milli(original)
        clones += 1


def run_fill(
    nodes: Sequence[Node],
    pods: Sequence[Pod],
    policy: str,
    seed: int,
    inflation: float = 1.3,
    progress: Progress | None = None,
    at_capacity: Callable[[Snapshot], None] | None = None,
) -> FillResult:
    """One fill experiment. Separate random streams drive the workload, the node order (which
    decides ties between equal scores) and the policy, so each is reproducible on its own.
    ``at_capacity`` is given a copy of the cluster as it is when the GPU requested so far is
    about to pass the cluster's GPU capacity (100% arrived), for a look at what stays idle there."""
    workload_rng, order_rng, policy_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    snap = Snapshot([nodes[i] for i in order_rng.permutation(len(nodes))])
    target = TargetWorkload.from_pods(pods)
    gauge = ClusterGauge(snap, target)
    if gauge.gpu_capacity == 0:
        raise ValueError("a fill run measures GPU allocation, and this cluster has no GPUs")
    arrivals = inflate(pods, gauge.gpu_capacity, inflation, workload_rng)
    placer = Placer(build_profile(policy, rng=policy_rng, workload=target))
    arrived = np.zeros(len(arrivals), dtype=np.int64)
    allocated = np.zeros(len(arrivals), dtype=np.int64)
    failed: Counter[str] = Counter()
    requested = 0
    for i, pod in enumerate(arrivals):
        if at_capacity is not None and requested <= gauge.gpu_capacity < requested + gpu_milli(pod):
            at_capacity(snap.copy())
        decision = placer.decide(snap, pod)
        if isinstance(decision, Placement):
            snap.assign(pod, decision.node_index, decision.gpus)
            gauge.placed(pod)
        else:
            failed[failure_reason(decision)] += 1
        requested += gpu_milli(pod)
        arrived[i], allocated[i] = requested, gauge.gpu_allocated
        if progress is not None:
            progress(1)
    return FillResult(
        policy=policy,
        seed=seed,
        inflation=inflation,
        capacity_milli=gauge.gpu_capacity,
        arrived_milli=arrived,
        allocated_milli=allocated,
        failed=dict(sorted(failed.items())),
        fragmented_milli=gauge.fragmented_milli(),
    )
