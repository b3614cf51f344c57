"""``timeline`` runs: pods arrive at their trace times, run for their durations and leave.

A pod that fits nowhere waits in a queue (in arrival order). Gangs (see
:mod:`scheduler.gang.groups`) are one unit: they wait until all their members have arrived, are
admitted by quota as one request, placed all-or-nothing by the gang planner, leave together and
are evicted together. Pods only ever take capacity
except at a departure, so a waiting pod can only newly fit on the node that was just freed:
each departure retries the queue against that node alone (gangs are planned afresh), and once a
pod does not fit, no later pod with the same requests and constraints is tried, which keeps long
queues cheap.

``gangs=False`` is the gang-unaware baseline: members are placed one by one as they fit, and a
gang's work only progresses (its members' durations only start) once every member runs; the
members placed first hold their GPUs idle meanwhile, possibly forever.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from burst.targets import BurstConfig
from quota.admission import Admit, Deny, Reclaim, Wait, decide, request_for
from quota.capacity import cluster_capacity
from quota.config import QuotaConfig
from quota.ledger import Ledger, Workload
from scheduler.gang.groups import Gang, membership
from scheduler.gang.planner import GangPlan, commit, plan_gang
from scheduler.gang.topology import Topology
from scheduler.model.cluster import Node, Pod, WorkloadKind
from scheduler.model.resources import GPU, MILLI_PER_GPU
from scheduler.model.snapshot import Snapshot
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from scheduler.placement.workload import TargetWorkload
from simulator.events import EventQueue, Priority
from simulator.measure import ClusterGauge, failure_reason
from simulator.overflow import SimulatedBurst, Started
from simulator.results import PodRecord, Sample, TimelineResult
from simulator.traces import Arrival

Progress = Callable[[int], None]


class TraceTimeError(ValueError):
    """A timeline run needs every pod's arrival time."""


def _fit_key(pod: Pod) -> tuple[object, ...]:
    """What decides where a pod may go (not how nodes are scored)."""
    return (pod.requests, pod.gpu, frozenset(pod.node_selector.items()), pod.affinity, pod.tolerations)


@dataclass(frozen=True, slots=True)
class Unit:
    """What is admitted, placed and evicted as one: a pod on its own, or a gang."""

    key: str
    members: tuple[int, ...]  # arrival indices
    min_members: int
    gang: bool


def units_of(arrivals: Sequence[Arrival], gangs: bool = True,
             classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES) -> list[Unit]:
    """Arrivals gathered into units, in order of first member."""
    by_key: dict[str, list[int]] = {}
    minimum: dict[str, int] = {}
    for i, a in enumerate(arrivals):
        m = membership(a.pod, classes=classes) if gangs else None
        key = m.key if m is not None else a.pod.key
        by_key.setdefault(key, []).append(i)
        if m is not None:
            minimum[key] = m.min_members or 0
    return [Unit(key, tuple(members), minimum.get(key) or len(members), key in minimum) for key, members in by_key.items()]


def siblings_of(arrivals: Sequence[Arrival]) -> dict[int, tuple[int, ...]]:
    """Each gang member's gang (arrival indices), read the same way as :func:`units_of`."""
    return {i: u.members for u in units_of(arrivals) if u.gang for i in u.members}


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
    gangs: bool = True,
    burst: BurstConfig | None = None,
    classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES,
) -> TimelineResult:
    """With ``quota``, every pod or gang is also decided by the quota ledger first, as the live
    admission loop does: admitted within its pool's guarantee or by borrowing, or it reclaims lent
    capacity (the victims stop after the grace period and wait again), or it waits. ``gangs``:
    gangs placed all-or-nothing (True), or members one by one (the gang-unaware baseline). With
    ``burst``, work still waiting after the threshold overflows when the configuration allows
    (within its pool's budget when there is quota), after the target's start-up time."""
    missing = next((a.pod.name for a in arrivals if a.time is None), None)
    if missing is not None:
        raise TraceTimeError(f"pod {missing} has no arrival time; a timeline run needs them (use fill mode)")
    order_rng, policy_rng, burst_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    snap = Snapshot([nodes[i] for i in order_rng.permutation(len(nodes))])
    target = TargetWorkload.from_pods(a.pod for a in arrivals)
    gauge = ClusterGauge(snap, target)
    placer = Placer(build_profile(policy, rng=policy_rng, workload=target, classes=classes))
    ledger = Ledger(quota, cluster_capacity(snap.nodes)) if quota is not None else None
    topology = Topology(snap)
    units = units_of(arrivals, gangs, classes)
    unit_of = {i: u for u, unit in enumerate(units) for i in unit.members}
    unit_index = {unit.key: u for u, unit in enumerate(units)}
    siblings = {} if gangs else siblings_of(arrivals)  # unaware: a member's work waits for its gang
    budgets = {p.name: p.budget for p in quota.pools if p.budget} if quota is not None else None
    overflow = SimulatedBurst(burst, budgets, burst_rng) if burst is not None else None

    # Payloads: ("arrive", pod, 0) or ("leave" | "evict" | "burst" | "burst-end", unit, run); a
    # unit's run is how many evictions it had, so that an event planned for an earlier run is
    # recognised as stale.
    queue: EventQueue[tuple[str, int, int]] = EventQueue()
    for i, a in enumerate(arrivals):
        queue.schedule(float(a.time), Priority.ARRIVAL, ("arrive", i, 0))  # type: ignore[arg-type]
    n = len(arrivals)
    start: list[float | None] = [None] * n
    end: list[float | None] = [None] * n
    reason = [""] * n
    evictions: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    gpu_seconds = [0.0] * n
    runs = [0] * len(units)
    arrived = [0] * len(units)
    borrowed = dict.fromkeys(sorted({a.pod.project for a in arrivals}), 0.0)  # GPU x seconds above guarantee
    last_event = 0.0
    burst_target = [""] * n
    burst_cost = [0.0] * n
    bursting: dict[int, Started] = {}
    charged: dict[int, str | None] = {}  # units holding quota (running, or reserved by a reclaim): GPU model
    blocked_by_quota: set[int] = set()
    denied: set[int] = set()
    waiting: list[int] = []
    samples: list[Sample] = []

    def gang(u: int, gpu_model: str | None) -> Gang:
        unit = units[u]
        return Gang(unit.key, tuple(_restricted(arrivals[i].pod, gpu_model) for i in unit.members), unit.min_members)

    def running(u: int) -> list[int]:
        return [i for i in units[u].members if start[i] is not None and end[i] is None]

    def usable(u: int) -> Callable[[Sequence[Workload]], bool]:
        def check(victims: Sequence[Workload]) -> bool:
            trial = snap.copy()
            for v in victims:
                for i in running(unit_index[v.key]):
                    trial.release(arrivals[i].pod.key)
            if units[u].gang:
                return isinstance(plan_gang(placer, trial, gang(u, None), topology), GangPlan)
            return isinstance(placer.decide(trial, arrivals[units[u].members[0]].pod), Placement)
        return check

    def schedule_leave(u: int, members: Sequence[int]) -> None:
        durations = [arrivals[i].duration for i in members]
        if all(d is not None for d in durations):  # a gang runs until its slowest member is done
            queue.schedule(queue.now + max(durations), Priority.DEPARTURE, ("leave", u, runs[u]))  # type: ignore[type-var]

    def place(u: int, among: np.ndarray | None) -> bool:
        unit = units[u]
        if unit.gang:
            plan = plan_gang(placer, snap, gang(u, charged.get(u)), topology)
            if not isinstance(plan, GangPlan):
                for i in unit.members:
                    reason[i] = plan.reason
                return False
            commit(snap, plan)
            placed = {a.pod.key for a in plan.assignments}
            members = [i for i in unit.members if arrivals[i].pod.key in placed]
            for i in unit.members:
                reason[i] = f"gang {unit.key} started with {len(members)} of {len(unit.members)} members"
        else:
            i = unit.members[0]
            decision = placer.decide(snap, _restricted(arrivals[i].pod, charged.get(u)), among)
            if not isinstance(decision, Placement):
                if among is None:
                    reason[i] = failure_reason(decision)
                return False
            snap.assign(arrivals[i].pod, decision.node_index, decision.gpus)
            members = [i]
        for i in members:
            gauge.placed(arrivals[i].pod)
            start[i] = queue.now
        group = siblings.get(members[0])
        if group is None:
            schedule_leave(u, members)
        elif all(start[j] is not None for j in group):  # unaware: the gang's work starts once all run
            for j in group:
                schedule_leave(unit_of[j], [j])
        return True

    def admit(u: int, among: np.ndarray | None) -> bool:
        """Quota first (when there is quota), then placement; a unit holding quota already (a
        reclaim reserved it) only needs room. A gang is one request for all its members."""
        if ledger is None or u in charged:
            return place(u, among)
        unit = units[u]
        decision = decide(ledger, request_for(unit.key, [arrivals[i].pod for i in unit.members]), queue.now,
                          usable=usable(u))
        if isinstance(decision, Wait | Deny):
            for i in unit.members:
                reason[i] = decision.reason
            blocked_by_quota.add(u)
            if isinstance(decision, Deny):
                denied.add(u)
            return False
        charged[u] = decision.gpu_model
        if isinstance(decision, Reclaim):
            for victim in decision.victims:  # charged until they stop, after the grace
                v = unit_index[victim.key]
                ledger.terminating.add(victim.key)
                queue.schedule(queue.now + ledger.config.reclaim.grace_s, Priority.DEPARTURE, ("evict", v, runs[v]))
        ledger.add(decision.request.charged(decision.gpu_model, queue.now), force=isinstance(decision, Reclaim))
        if place(u, None if u in blocked_by_quota else among):
            blocked_by_quota.discard(u)
            return True
        if isinstance(decision, Admit):  # no room for it now: give the quota back and wait
            ledger.remove(unit.key)
            del charged[u]
        blocked_by_quota.discard(u)
        return False

    def stop(members: Sequence[int]) -> np.ndarray:
        """Take running pods off their nodes (a gang's all together); returns the nodes freed."""
        freed = set()
        for i in members:
            freed.add(snap.release(arrivals[i].pod.key).node)
            gauge.released(arrivals[i].pod)
            milli = arrivals[i].pod.gpu.total_milli if arrivals[i].pod.gpu else 0
            gpu_seconds[i] += (queue.now - start[i]) * milli / MILLI_PER_GPU  # type: ignore[operator]
        return np.array(sorted(freed))

    def order(w: int) -> tuple[object, ...]:
        """Units that hold quota first, then by pool fairness (weighted dominant share), then arrival."""
        if ledger is None:
            return (w,)
        first = arrivals[units[w].members[0]]
        pool = ledger.row.get(first.pod.project)
        share = ledger.dominant_share(pool) if pool is not None else float("inf")
        return (w not in charged, -first.pod.priority, share, first.time, w)

    def fit_key(w: int) -> tuple[object, ...]:
        return (units[w].min_members, *(_fit_key(arrivals[i].pod) for i in units[w].members))

    def wait(u: int) -> None:
        """``u`` joins the queue; with overflow, it is considered for a burst after the threshold."""
        waiting.append(u)
        if overflow is not None and overflow.eligible([arrivals[i].pod for i in units[u].members]):
            queue.schedule(queue.now + overflow.config.threshold_s, Priority.ARRIVAL, ("burst", u, runs[u]))

    def try_burst(u: int) -> None:
        members = units[u].members
        pods = [arrivals[i].pod for i in members]
        waited = queue.now - max(float(arrivals[i].time) for i in members)  # type: ignore[arg-type]
        started = overflow.try_start(units[u].key, pods, [arrivals[i].duration for i in members], waited,  # type: ignore[union-attr]
                                     queue.now)
        if isinstance(started, str):
            for i in members:
                reason[i] = started
            queue.schedule(queue.now + overflow.config.threshold_s, Priority.ARRIVAL, ("burst", u, runs[u]))  # type: ignore[union-attr]
            return
        waiting.remove(u)
        bursting[u] = started
        for i in members:
            start[i] = started.start
            burst_target[i] = started.target
        queue.schedule(max(started.end), Priority.DEPARTURE, ("burst-end", u, runs[u]))

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
            u = unit_of[i]
            arrived[u] += 1
            if arrived[u] == len(units[u].members) and not admit(u, None) and u not in denied:
                wait(u)  # a gang is admitted once its last member has arrived
            if progress is not None:
                progress(1)
        elif what == "burst":
            if run == runs[i] and i in waiting and i not in charged:
                try_burst(i)
        elif what == "burst-end":
            started = bursting.pop(i)
            costs = overflow.finish(units[i].key, started)  # type: ignore[union-attr]
            for m, finished, cost in zip(units[i].members, started.end, costs):
                end[m] = finished
                burst_cost[m] = cost
        else:
            u = i
            members = running(u)
            if run != runs[u] or not members:
                continue  # planned for a run that an eviction ended, or the unit already left
            freed = stop(members)
            if ledger is not None and charged.pop(u, False) is not False:
                ledger.remove(units[u].key)
            if what == "leave":
                for m in members:
                    end[m] = queue.now
            else:  # evicted, a gang whole: it starts over once admitted again
                for m in members:
                    evictions[m].append((start[m], queue.now))  # type: ignore[arg-type]
                    start[m] = None
                runs[u] += 1
                wait(u)
            if ledger is not None:
                waiting.sort(key=order)
            misfits: set[tuple[object, ...]] = set()
            still: list[int] = []
            for w in waiting:
                key = fit_key(w)
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
                  reason[i] if start[i] is None else "", tuple(evictions[i]), gpu_seconds[i], burst_target[i],
                  burst_cost[i])
        for i, a in enumerate(arrivals)
    )
    return TimelineResult(policy=policy, seed=seed, pods=records, samples=tuple(samples),
                          borrowed_gpu_seconds=borrowed if ledger is not None else {})
