"""The admission loop: decides quota, gang placement and burst for pods held by the
``slotwise.io/admission`` scheduling gate, then lifts the gate (narrowing node affinity to the
plan, or steering the pod to a burst target), evicts reclaim victims and tells waiting pods why.

:meth:`AdmissionLoop.plan` decides and returns typed actions; only :meth:`AdmissionLoop.apply`
talks to Kubernetes. Planning does write to the quota store: an admission is charged when it is
decided, under the store's lock, so two decisions can never take the same capacity.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiException

from burst.decide import Overflow, decide_burst
from burst.patch import burst_patch
from burst.targets import BurstConfig
from quota.admission import Deny, Reclaim, Wait, request_for
from quota.config import QuotaConfig
from quota.store import Store, StoreError
from scheduler.gang.groups import Gang, GangError, group_gangs, membership
from scheduler.gang.planner import GangPlan, commit, plan_gang
from scheduler.gang.topology import Topology
from scheduler.model.cluster import Pod, WorkloadKind
from scheduler.model.k8s_json import ModelError, pod_from_k8s
from scheduler.model.snapshot import Snapshot
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from scheduler.server.cache import ClusterCache
from scheduler.server.extender import PLANNED_NODES_ANNOTATION
from scheduler.server.kube import Kube
from scheduler.server.metrics import ServiceMetrics
from scheduler.server.webhooks import ADMISSION_GATE

log = logging.getLogger(__name__)

ACTOR = "admission-loop"
CONDITION = "SlotwiseAdmitted"
EVENT_REASON = "SlotwiseWaiting"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
#: A workload admitted this recently is never released as gone: the cache may not have seen its pods yet.
RELEASE_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class Gated:
    """A pod held by the admission gate: its model, its API object (patches are computed against
    it: the gate's index, what affinity and annotations exist) and when it was created."""

    pod: Pod
    obj: Mapping[str, Any]
    created: float

    @classmethod
    def read(cls, obj: Mapping[str, Any], now: float) -> Gated | None:
        """The gated pod, or None if the admission gate is not on it or the model cannot read it."""
        gates = (obj.get("spec") or {}).get("schedulingGates") or []
        if not any(isinstance(g, Mapping) and g.get("name") == ADMISSION_GATE for g in gates):
            return None
        try:
            pod = pod_from_k8s(obj)
        except ModelError as exc:  # the validating webhook explains it to the user
            log.warning("ignoring gated pod %s: %s", (obj.get("metadata") or {}).get("name"), exc)
            return None
        stamp = (obj.get("metadata") or {}).get("creationTimestamp")
        return cls(pod, obj, datetime.fromisoformat(stamp).timestamp() if stamp else now)


@dataclass(frozen=True, slots=True)
class Ungate:
    pod_key: str
    patch: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Burst:
    pod_key: str
    patch: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Evict:
    pod_key: str
    grace_s: int


@dataclass(frozen=True, slots=True)
class Pending:
    """The pod stays gated; ``reason`` is the message, ``cause`` the condition's CamelCase reason."""

    pod_key: str
    reason: str
    cause: str = "Waiting"
    uid: str = ""


Action = Ungate | Burst | Evict | Pending


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def gate_ops(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Remove the admission gate; the ``test`` makes the patch fail rather than drop another gate
    if the list changed since it was read."""
    gates = obj["spec"]["schedulingGates"]
    path = f"/spec/schedulingGates/{next(i for i, g in enumerate(gates) if g.get('name') == ADMISSION_GATE)}"
    return [{"op": "test", "path": path, "value": {"name": ADMISSION_GATE}}, {"op": "remove", "path": path}]


def affinity_ops(spec: Mapping[str, Any], nodes: Sequence[str]) -> list[dict[str, Any]]:
    """Require ``nodes`` by name. Existing terms are ORed, so each one gets the requirement ANDed
    in: the only change Kubernetes allows to a gated pod's terms is adding requirements."""
    requirement = {"key": "metadata.name", "operator": "In", "values": list(nodes)}
    term = {"matchFields": [requirement]}
    affinity = spec.get("affinity")
    node_affinity = affinity.get("nodeAffinity") if affinity else None
    required = node_affinity.get(REQUIRED) if node_affinity else None
    base = f"/spec/affinity/nodeAffinity/{REQUIRED}"
    if required and required.get("nodeSelectorTerms"):
        return [{"op": "add", "path": f"{base}/nodeSelectorTerms/{i}/matchFields/-", "value": requirement}
                if t.get("matchFields") else
                {"op": "add", "path": f"{base}/nodeSelectorTerms/{i}/matchFields", "value": [requirement]}
                for i, t in enumerate(required["nodeSelectorTerms"])]
    if required is not None:
        return [{"op": "add", "path": f"{base}/nodeSelectorTerms", "value": [term]}]
    value: dict[str, Any] = {"nodeSelectorTerms": [term]}
    if node_affinity is not None:
        return [{"op": "add", "path": base, "value": value}]
    if affinity is not None:
        return [{"op": "add", "path": "/spec/affinity/nodeAffinity", "value": {REQUIRED: value}}]
    return [{"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {REQUIRED: value}}}]


def ungate_patch(obj: Mapping[str, Any], node: str, planned: Sequence[str]) -> list[dict[str, Any]]:
    """Gate off, affinity to ``node``, and the plan's nodes (a gang's, for the extender) annotated."""
    notes = (obj.get("metadata") or {}).get("annotations")
    text = ",".join(planned)
    annotate = ({"op": "add", "path": f"/metadata/annotations/{_escape(PLANNED_NODES_ANNOTATION)}", "value": text}
                if notes else {"op": "add", "path": "/metadata/annotations", "value": {PLANNED_NODES_ANNOTATION: text}})
    return [*gate_ops(obj), *affinity_ops(obj.get("spec") or {}, [node]), annotate]


def _workload_key(pod: Pod, classes: Mapping[WorkloadKind, WorkloadClass]) -> str:
    """The key the store charges the pod under: its gang's, or its own."""
    try:
        m = membership(pod, classes=classes)
    except GangError:
        return pod.key
    return m.key if m is not None else pod.key


@dataclass(frozen=True, slots=True)
class _Unit:
    """One admission decision: a pod on its own, or a whole gang."""

    key: str
    members: tuple[Gated, ...]
    gang: Gang | None

    @property
    def order(self) -> tuple[int, float, str]:
        return (-max(g.pod.priority for g in self.members), min(g.created for g in self.members), self.key)


class AdmissionLoop:
    def __init__(self, cache: ClusterCache, kube: Kube, store: Store, placer_profile: str = "default",
                 burst: BurstConfig | None = None, clock: Callable[[], float] = time.time, interval_s: float = 2.0,
                 classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES,
                 metrics: ServiceMetrics | None = None):
        self.cache = cache
        self.kube = kube
        self.store = store
        self.classes = classes
        self.metrics = metrics
        self.placer = Placer(build_profile(placer_profile, classes=classes))
        self.burst = burst
        self.clock = clock
        self.interval_s = interval_s
        self._denied: dict[str, QuotaConfig] = {}  # key -> the configuration that denied it: not asked again until it changes
        self._told: dict[str, str] = {}  # pod key -> the reason last written to it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Planning -------------------------------------------------------------------------------------
    def plan(self, snapshot: Snapshot, gated_pods: Sequence[Gated], now: float) -> list[Action]:
        """Decide every gated unit, highest priority then oldest first, each seeing the ones before."""
        trial = snapshot.copy()
        ledger = self.store.ledger()
        admitted = set(ledger.workloads)
        running = {_workload_key(a.pod, self.classes) for a in snapshot.assignments.values()}
        actions: list[Action] = []
        units, problems = self._units(gated_pods)
        actions += problems
        topology = Topology(trial) if any(u.gang for u in units) else None
        config = self.store.config()
        for unit in sorted(units, key=lambda u: u.order):
            if unit.gang is not None and unit.key in running:
                continue  # members already run: not all-or-nothing any more, leave the rest to the scheduler
            actions += self._decide(trial, topology, unit, admitted, now, config, snapshot, ledger.config.reclaim.grace_s)
        return actions

    def _units(self, gated: Iterable[Gated]) -> tuple[list[_Unit], list[Action]]:
        buckets: dict[str, list[Gated]] = {}
        problems: list[Action] = []
        for g in gated:
            try:
                m = membership(g.pod, classes=self.classes)
            except GangError as exc:
                problems.append(Pending(g.pod.key, str(exc), "InvalidGang", g.pod.uid))
                continue
            buckets.setdefault(m.key if m else g.pod.key, []).append(g)
        units = []
        for members in buckets.values():
            by_key = {g.pod.key: g for g in members}
            try:
                gangs, alone = group_gangs((g.pod for g in members), classes=self.classes)
            except GangError as exc:
                problems += [Pending(g.pod.key, str(exc), "InvalidGang", g.pod.uid) for g in members]
                continue
            units += [_Unit(gang.key, tuple(by_key[p.key] for p in gang.members), gang) for gang in gangs]
            units += [_Unit(p.key, (by_key[p.key],), None) for p in alone]
        return units, problems

    def _decide(self, trial: Snapshot, topology: Topology | None, unit: _Unit, admitted: set[str], now: float,
                config: QuotaConfig, snapshot: Snapshot, grace_s: float) -> list[Action]:
        def pending(reason: str, cause: str) -> list[Action]:
            return [Pending(g.pod.key, reason, cause, g.pod.uid) for g in unit.members]

        pods = [g.pod for g in unit.members]
        if unit.gang is not None and not unit.gang.complete:
            return pending(f"gang {unit.key}: {len(pods)} of {unit.gang.min_members} members exist", "GangIncomplete")
        if unit.key not in admitted:
            if self._denied.get(unit.key) is config:
                return []  # told already; the audit trail holds the denial once per configuration
            decision = self.store.admit(request_for(unit.key, pods), now, ACTOR)
            if isinstance(decision, Deny):
                self._denied[unit.key] = config
                return pending(decision.reason, "QuotaDenied")
            if isinstance(decision, Wait):
                return self._burst_or(unit, now, False, decision.reason, "QuotaWait")
            admitted.add(unit.key)
            if isinstance(decision, Reclaim):
                # Charged now so nobody else takes the room; placed once the victims are gone.
                evictions: list[Action] = [Evict(p.key, int(grace_s)) for v in decision.victims
                                           for p in self._pods_of(snapshot, v.key)]
                return evictions + pending(f"{decision.reason}; waiting for them to stop", "Reclaiming")
        placed = self._place(trial, topology, unit)
        if isinstance(placed, str):
            return self._burst_or(unit, now, True, placed, "NoCapacity")
        planned = list(dict.fromkeys(placed.values()))
        return [Ungate(g.pod.key, ungate_patch(g.obj, placed[g.pod.key], planned)) if g.pod.key in placed
                else Pending(g.pod.key, f"gang {unit.key} runs at its minimum; no room for this member", "NoCapacity",
                             g.pod.uid)
                for g in unit.members]

    def _place(self, trial: Snapshot, topology: Topology | None, unit: _Unit) -> dict[str, str] | str:
        """Pod key -> node, committed to ``trial`` so later units see it; or why not."""
        if unit.gang is not None:
            assert topology is not None
            plan = plan_gang(self.placer, trial, unit.gang, topology)
            if not isinstance(plan, GangPlan):
                return plan.reason
            commit(trial, plan)
            return {a.pod.key: trial.names[a.node] for a in plan.assignments}
        pod = unit.members[0].pod
        decision = self.placer.decide(trial, pod)
        if not isinstance(decision, Placement):
            return f"no node can take it: {decision.message}"
        trial.assign(pod, decision.node_index, decision.gpus)
        return {pod.key: decision.node}

    def _burst_or(self, unit: _Unit, now: float, charged: bool, reason: str, cause: str) -> list[Action]:
        """Overflow to a burst target if configured and due, else wait with ``reason``."""
        pending = [Pending(g.pod.key, reason, cause, g.pod.uid) for g in unit.members]
        if self.burst is None:
            return pending
        pods = [g.pod for g in unit.members]
        at = datetime.fromtimestamp(now, UTC)
        budget = self.store.budget_left(pods[0].project, at)
        waited = now - min(g.created for g in unit.members)
        decision = decide_burst(self.burst, unit.key, pods, waited, None, budget[0] if budget else None)
        if not isinstance(decision, Overflow):
            return [Pending(p.pod_key, f"{reason}; no overflow: {decision.reason}", cause, p.uid) for p in pending]
        try:
            self.store.reserve_spend(decision.pool, unit.key, decision.offers[0].target.name, decision.reserved, at, ACTOR)
        except StoreError as exc:  # another admitter spent the budget meanwhile
            return [Pending(p.pod_key, f"{reason}; no overflow: {exc}", cause, p.uid) for p in pending]
        if charged:
            self.store.release(unit.key, ACTOR)  # it runs outside the cluster: its quota charge goes back
        objs = {g.pod.key: g.obj for g in unit.members}
        return [Burst(o.pod.key, gate_ops(objs[o.pod.key]) + burst_patch(objs[o.pod.key], o, self.burst.max_runtime_s))
                for o in decision.offers]

    def _pods_of(self, snapshot: Snapshot, workload: str) -> list[Pod]:
        """The running pods of a workload key (a pod's own key or its gang's)."""
        return [a.pod for a in snapshot.assignments.values() if workload in (a.pod.key, _workload_key(a.pod, self.classes))]

    def release_finished(self, snapshot: Snapshot) -> list[str]:
        """Give back the charge of admitted workloads with no pod left in the cache (the cache drops
        Succeeded and Failed pods), evicted victims included."""
        live = {_workload_key(p, self.classes) for p in (*(a.pod for a in snapshot.assignments.values()), *self.cache.pending())}
        now = self.clock()
        done = [w.key for w in self.store.ledger().charged()
                if w.key not in live and now - w.admitted_at >= RELEASE_GRACE_S]
        for key in done:
            self.store.release(key, ACTOR)
        return done

    # Effects --------------------------------------------------------------------------------------
    def apply(self, actions: Iterable[Action]) -> None:
        """Perform each action; one failing (the pod gone, a PDB refusing eviction) never stops the rest."""
        for action in actions:
            namespace, name = action.pod_key.split("/", 1)
            try:
                if isinstance(action, Ungate | Burst):
                    self.kube.patch_pod(namespace, name, action.patch)
                    self._told.pop(action.pod_key, None)
                elif isinstance(action, Evict):
                    self.kube.evict(namespace, name, action.grace_s)
                elif self._told.get(action.pod_key) != action.reason:  # write a reason once, not every cycle
                    self.kube.create_event(namespace, name, action.uid, EVENT_REASON, action.reason)
                    self.kube.set_pod_condition(namespace, name, {
                        "type": CONDITION, "status": "False", "reason": action.cause, "message": action.reason,
                        "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
                    self._told[action.pod_key] = action.reason
            except ApiException as exc:
                log.warning("%s %s failed: %s %s", type(action).__name__, action.pod_key, exc.status, exc.reason)

    def run_once(self) -> list[Action]:
        """One cycle: release what finished, plan the gated pods, apply. Nothing until the cache is synced."""
        if not self.cache.synced:
            return []
        now = self.clock()
        gated = [g for obj in self.kube.unscheduled() if (g := Gated.read(obj, now)) is not None]
        with self.cache.snapshot() as live:
            snapshot = live.copy()  # plan outside the cache's lock: the extender reads it meanwhile
        self.release_finished(snapshot)
        with self.metrics.timed("admit") if self.metrics is not None else nullcontext():
            actions = self.plan(snapshot, gated, now)
        self.apply(actions)
        if self.metrics is not None:
            self.metrics.set_pending(Counter(a.cause for a in actions if isinstance(a, Pending)))
        keys = {g.pod.key for g in gated}
        self._told = {k: v for k, v in self._told.items() if k in keys}
        units = {_workload_key(g.pod, self.classes) for g in gated}
        self._denied = {k: v for k, v in self._denied.items() if k in units}
        return actions

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="admission-loop")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the API server or database being away must not kill the loop
                log.exception("admission cycle failed")
            self._stop.wait(self.interval_s)
