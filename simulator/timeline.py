"""``timeline`` runs: pods arrive at their trace times, run for their durations and leave.

A pod that fits nowhere waits in a queue (in arrival order). Pods only ever take capacity
except at a departure, so a waiting pod can only newly fit on the node that was just freed:
each departure retries the queue against that node alone, and once a pod does not fit there,
no later pod with the same requests and constraints is tried, which keeps long queues cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from quota.admission import Admit, Deny, Reclaim, Wait, decide, request_for
from quota.capacity import cluster_capacity
from quota.config import QuotaConfig
from quota.ledger import Ledger, Workload
from scheduler.model.cluster import Node, Pod
from scheduler.model.resources import GPU, MILLI_PER_GPU
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


def _restricted(pod: Pod, gpu_model: str | None) -> Pod:
    """The pod held to the GPU model its quota was charged for."""
    if gpu_model is None or pod.gpu is None:
        return pod
    return replace(pod, gpu=replace(pod.gpu, models=frozenset({gpu_model})))


def run_timeline(
    nodes: Sequence[Node],
    arrivals: Sequence[Arrival],
    policy: str,
    seed: int,
    progress: Progress | None = None,
    quota: QuotaConfig | None = None,
) -> TimelineResult:
    """With ``quota``, every pod is also decided by the quota ledger first, as the live admission
    loop does: admitted within its pool's guarantee or by borrowing, or it reclaims lent capacity
    (the victims stop after the grace period and wait again), or it waits."""
    missing = next((a.pod.name for a in arrivals if a.time is None), None)
    if missing is not None:
        raise TraceTimeError(f"pod {missing} has no arrival time; a timeline run needs them (use fill mode)")
    order_rng, policy_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    snap = Snapshot([nodes[i] for i in order_rng.permutation(len(nodes))])
    target = TargetWorkload.from_pods(a.pod for a in arrivals)
    gauge = ClusterGauge(snap, target)
    placer = Placer(build_profile(policy, rng=policy_rng, workload=target))
    ledger = Ledger(quota, cluster_capacity(snap.nodes)) if quota is not None else None

    # Payloads: (what, pod, run); a pod's run is how many evictions it had, so that a departure
    # planned for an earlier run is recognised as stale.
    queue: EventQueue[tuple[str, int, int]] = EventQueue()
    for i, a in enumerate(arrivals):
        queue.schedule(float(a.time), Priority.ARRIVAL, ("arrive", i, 0))  # type: ignore[arg-type]
    index = {a.pod.key: i for i, a in enumerate(arrivals)}
    n = len(arrivals)
    start: list[float | None] = [None] * n
    end: list[float | None] = [None] * n
    reason = [""] * n
    evictions: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    gpu_seconds = [0.0] * n
    borrowed = dict.fromkeys(sorted({a.pod.project for a in arrivals}), 0.0)  # GPU x seconds above guarantee
    last_event = 0.0
    charged: dict[int, str | None] = {}  # pods holding quota (running, or reserved by a reclaim): GPU model
    blocked_by_quota: set[int] = set()
    denied: set[int] = set()
    waiting: list[int] = []
    samples: list[Sample] = []

    def usable(pod: Pod, gpu_model: str | None) -> Callable[[Sequence[Workload]], bool]:
        def check(victims: Sequence[Workload]) -> bool:
            trial = snap.copy()
            for v in victims:
                trial.release(v.key)
            return isinstance(placer.decide(trial, _restricted(pod, gpu_model)), Placement)
        return check

    def place(i: int, among: np.ndarray | None) -> bool:
        pod = _restricted(arrivals[i].pod, charged.get(i))
        decision = placer.decide(snap, pod, among)
        if not isinstance(decision, Placement):
            if among is None:
                reason[i] = failure_reason(decision)
            return False
        snap.assign(arrivals[i].pod, decision.node_index, decision.gpus)
        gauge.placed(arrivals[i].pod)
        start[i] = queue.now
        duration = arrivals[i].duration
        if duration is not None:
            queue.schedule(queue.now + duration, Priority.DEPARTURE, ("leave", i, len(evictions[i])))
        return True

    def admit(i: int, among: np.ndarray | None) -> bool:
        """Quota first (when there is quota), then placement; a pod holding quota already (a
        reclaim reserved it) only needs a node."""
        if ledger is None or i in charged:
            return place(i, among)
        pod = arrivals[i].pod
        decision = decide(ledger, request_for(pod.key, [pod]), queue.now, usable=usable(pod, None))
        if isinstance(decision, Wait | Deny):
            reason[i] = decision.reason
            blocked_by_quota.add(i)
            if isinstance(decision, Deny):
                denied.add(i)
            return False
        charged[i] = decision.gpu_model
        if isinstance(decision, Reclaim):
            for victim in decision.victims:  # charged until they stop, after the grace
                v = index[victim.key]
                ledger.terminating.add(victim.key)
                queue.schedule(queue.now + ledger.config.reclaim.grace_s, Priority.DEPARTURE, ("evict", v, len(evictions[v])))
        ledger.add(decision.request.charged(decision.gpu_model, queue.now), force=isinstance(decision, Reclaim))
        if place(i, None if i in blocked_by_quota else among):
            blocked_by_quota.discard(i)
            return True
        if isinstance(decision, Admit):  # no node for it now: give the quota back and wait
            ledger.remove(pod.key)
            del charged[i]
        blocked_by_quota.discard(i)
        return False

    def stop(i: int) -> np.ndarray:
        """Take a running pod off its node; returns the node freed."""
        assignment = snap.release(arrivals[i].pod.key)
        gauge.released(arrivals[i].pod)
        ran = queue.now - start[i]  # type: ignore[operator]
        milli = arrivals[i].pod.gpu.total_milli if arrivals[i].pod.gpu else 0
        gpu_seconds[i] += ran * milli / MILLI_PER_GPU
        return np.array([assignment.node])

    def order(w: int) -> tuple[object, ...]:
        """Pods that hold quota first, then by pool fairness (weighted dominant share), then arrival."""
        if ledger is None:
            return (w,)
        pool = ledger.row.get(arrivals[w].pod.project)
        share = ledger.dominant_share(pool) if pool is not None else float("inf")
        return (w not in charged, -arrivals[w].pod.priority, share, arrivals[w].time, w)

    gpu_column = ledger.column.get(GPU) if ledger is not None else None
    for event in queue:
        what, i, run = event.payload
        if gpu_column is not None:  # each project's borrowing held since the last event
            for project in borrowed:
                pool = ledger.row.get(project)  # type: ignore[union-attr]
                if pool is not None:
                    above = ledger.borrowing(pool)[gpu_column]  # type: ignore[union-attr]
                    borrowed[project] += (queue.now - last_event) * above / MILLI_PER_GPU
            last_event = queue.now
        if what == "arrive":
            if not admit(i, None) and i not in denied:
                waiting.append(i)
            if progress is not None:
                progress(1)
        else:
            if run != len(evictions[i]) or start[i] is None or end[i] is not None:
                continue  # planned for a run that an eviction ended, or the pod already left
            freed = stop(i)
            if ledger is not None and charged.pop(i, False) is not False:
                ledger.remove(arrivals[i].pod.key)
            if what == "leave":
                end[i] = queue.now
            else:  # evicted: it starts over once admitted again
                evictions[i].append((start[i], queue.now))  # type: ignore[arg-type]
                start[i] = None
                waiting.append(i)
            if ledger is not None:
                waiting.sort(key=order)
            misfits: set[tuple[object, ...]] = set()
            still: list[int] = []
            for w in waiting:
                key = _fit_key(arrivals[w].pod)
                if (w not in blocked_by_quota and key in misfits) or not admit(w, freed):
                    if w not in blocked_by_quota:
                        misfits.add(key)
                    if w not in denied:
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
                  reason[i] if start[i] is None else "", tuple(evictions[i]), gpu_seconds[i])
        for i, a in enumerate(arrivals)
    )
    return TimelineResult(policy=policy, seed=seed, pods=records, samples=tuple(samples),
                          borrowed_gpu_seconds=borrowed if ledger is not None else {})
