"""``timeline`` runs: pods arrive at their trace times, run for their durations and leave.

A pod that fits nowhere waits in a queue (in arrival order). Pods only ever take capacity
except at a departure, so a waiting pod can only newly fit on the node that was just freed:
each departure retries the queue against that node alone, and once a pod does not fit there,
no later pod with the same requests and constraints is tried, which keeps long queues cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from scheduler.model.cluster import Node, Pod
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from scheduler.placement.workload import TargetWorkload
from simulator.events import EventQueue, Priority
from simulator.measure import ClusterGauge, failure_reason
from simulator.results import PodRecord, Sample, TimelineResult
from simulator.traces import Arrival

Progress = Callable[[int], None]


class TraceTimeError(ValueError):
    """A timeline run needs every pod's arrival time."""


def _fit_key(pod: Pod) -> tuple[object, ...]:
    """What decides where a pod may go (not how nodes are scored)."""
    return (pod.requests, pod.gpu, frozenset(pod.node_selector.items()), pod.affinity, pod.tolerations)


def run_timeline(
    nodes: Sequence[Node],
    arrivals: Sequence[Arrival],
    policy: str,
    seed: int,
    progress: Progress | None = None,
) -> TimelineResult:
    missing = next((a.pod.name for a in arrivals if a.time is None), None)
    if missing is not None:
        raise TraceTimeError(f"pod {missing} has no arrival time; a timeline run needs them (use fill mode)")
    order_rng, policy_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    snap = Snapshot([nodes[i] for i in order_rng.permutation(len(nodes))])
    target = TargetWorkload.from_pods(a.pod for a in arrivals)
    gauge = ClusterGauge(snap, target)
    placer = Placer(build_profile(policy, rng=policy_rng, workload=target))

    queue: EventQueue[tuple[str, int]] = EventQueue()
    for i, a in enumerate(arrivals):
        queue.schedule(float(a.time), Priority.ARRIVAL, ("arrive", i))  # type: ignore[arg-type]
    start: list[float | None] = [None] * len(arrivals)
    end: list[float | None] = [None] * len(arrivals)
    reason = [""] * len(arrivals)
    waiting: list[int] = []
    samples: list[Sample] = []

    def try_place(i: int, among: np.ndarray | None = None) -> bool:
        pod = arrivals[i].pod
        decision = placer.decide(snap, pod, among)
        if not isinstance(decision, Placement):
            if among is None:
                reason[i] = failure_reason(decision)
            return False
        snap.assign(pod, decision.node_index, decision.gpus)
        gauge.placed(pod)
        start[i] = queue.now
        duration = arrivals[i].duration
        if duration is not None:
            queue.schedule(queue.now + duration, Priority.DEPARTURE, ("leave", i))
        return True

    for event in queue:
        what, i = event.payload
        if what == "arrive":
            if not try_place(i):
                waiting.append(i)
            if progress is not None:
                progress(1)
        else:
            assignment = snap.release(arrivals[i].pod.key)
            gauge.released(arrivals[i].pod)
            end[i] = queue.now
            freed = np.array([assignment.node])
            misfits: set[tuple[object, ...]] = set()
            still: list[int] = []
            for w in waiting:
                key = _fit_key(arrivals[w].pod)
                if key in misfits or not try_place(w, freed):
                    misfits.add(key)
                    still.append(w)
            waiting = still
        sample = Sample(queue.now, gauge.gpu_allocated / max(gauge.gpu_capacity, 1),
                        gauge.cpu_allocated / max(gauge.cpu_capacity, 1), len(waiting),
                        gauge.fragmented_milli() / max(gauge.gpu_capacity, 1))
        if samples and samples[-1].time == sample.time:
            samples[-1] = sample
        else:
            samples.append(sample)

    records = tuple(
        PodRecord(a.pod.key, str(a.pod.kind), a.pod.project, float(a.time), start[i], end[i],  # type: ignore[arg-type]
                  reason[i] if start[i] is None else "")
        for i, a in enumerate(arrivals)
    )
    return TimelineResult(policy=policy, seed=seed, pods=records, samples=tuple(samples))
