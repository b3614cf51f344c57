"""The admission loop: decides quota, gang placement and burst for pods held by the
``slotwise.io/admission`` scheduling gate, then lifts the gate (narrowing node affinity to the
plan, or steering the pod to a burst target), evicts reclaim victims and tells waiting pods why.
It reads gated pods from the cluster cache (no API call to find them), retries evictions that a
PodDisruptionBudget refuses, settles burst spend once a burst's pods are gone, and gives up on
gangs that wait past their timeout. A gang named by a PodGroup (scheduler-plugins' or Volcano's)
takes its minimum, and scheduler-plugins' timeout, from that object as the cache holds it.
Given the fleet MIG node reports describe, a pod asking a MIG instance is placed only where an
idle instance of its profile is free, and takes it for the rest of the cycle; where none is, it
waits, and repartitioning is left to an admin (``slotwise mig plan``). A GPU pod's slots are
annotated on it; a GPU share joins its GPU's group, whose reservation pod the loop creates
(slotwise.server.gpu_shares), and the groups are reconciled after each cycle.

A unit no node can take is told so and decided again only once room may have been freed (the
cache counts such changes), as kube-scheduler's unschedulable queue does. Gate patches go out in
the background: a cycle holds the pods it ungated as placed until the API server answers, and
the next one decides the pods that arrived meanwhile.

:meth:`AdmissionLoop.plan` decides and returns typed actions; only :meth:`AdmissionLoop.apply`
talks to Kubernetes. Planning does write to the quota store: an admission is charged when it is
decided, under the store's lock, so two decisions can never take the same capacity.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiException
from urllib3.exceptions import HTTPError

from burst.decide import Overflow, decide_burst
from burst.patch import burst_patch
from burst.targets import BurstConfig
from mig.plugin import FleetSource, mig_placer, requested_profile
from mig.slots import Fleet
from quota.admission import Deny, Reclaim, Wait, request_for
from quota.config import QuotaConfig
from quota.store import Fenced, Store, StoreError
from scheduler.gang.groups import (
    GANG_TIMEOUT_ANNOTATION,
    Gang,
    GangError,
    group_gangs,
    membership,
)
from scheduler.gang.planner import GangPlan, commit, plan_gang
from scheduler.gang.queue import TimedOut
from scheduler.gang.topology import Topology
from scheduler.model.cluster import GPU_INDICES_ANNOTATION, Node, Pod, WorkloadKind
from scheduler.model.json_patch import set_entries
from scheduler.model.snapshot import Snapshot
from scheduler.placement import share_groups
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from slotwise.server.cache import ClusterCache
from slotwise.server.extender import PLANNED_NODES_ANNOTATION
from slotwise.server.gpu_share_reconciler import ShareReconciler
from slotwise.server.gpu_shares import ReservationSettings, held_groups, plan_share, reservation_room
from slotwise.server.kube import Kube
from slotwise.server.leader import Elector
from slotwise.server.live_profile import LiveProfile
from slotwise.server.metrics import ServiceMetrics
from slotwise.server.webhooks import ADMISSION_GATE

log = logging.getLogger(__name__)

ACTOR = "admission-loop"
CONDITION = "SlotwiseAdmitted"
EVENT_REASON = "SlotwiseWaiting"
EVICTION_REFUSED = "SlotwiseEvictionRefused"
TIMED_OUT = "GangTimedOut"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
#: A workload admitted (or burst) this recently is never taken as gone: the cache may not have seen its pods yet.
RELEASE_GRACE_S = 60.0
#: A reclaim victim still running this long after its grace period is evicted again.
EVICTION_RESEND_S = 30.0
#: A unit that fit on no node is decided again once room may have been freed, and at least this
#: often besides (kube-scheduler retries its unschedulable pods on cluster events the same way).
NO_ROOM_RETRY_S = 60.0


@dataclass(frozen=True, slots=True)
class Gated:
    """A pod held by the admission gate: its model, its API object (patches are computed against
    it: the gate's index, what affinity and annotations exist) and when it was created."""

    pod: Pod
    obj: Mapping[str, Any]
    created: float

    @classmethod
    def of(cls, pod: Pod, obj: Mapping[str, Any], now: float) -> Gated:
        stamp = (obj.get("metadata") or {}).get("creationTimestamp")
        return cls(pod, obj, datetime.fromisoformat(stamp).timestamp() if stamp else now)


@dataclass(frozen=True, slots=True)
class Ungate:
    """Lift the gate with ``patch``; a GPU share names its ``group``, whose ``reservation`` pod is
    created first where the group is new."""

    pod_key: str
    patch: list[dict[str, Any]]
    uid: str = ""
    node: str = ""
    group: str = ""
    reservation: dict[str, Any] | None = None
    pod: Pod | None = None  # with ``gpus``: the room it holds until the cache shows it bound
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Burst:
    pod_key: str
    patch: list[dict[str, Any]]
    uid: str = ""


@dataclass(frozen=True, slots=True)
class Evict:
    """Evict a reclaim victim so that ``requester`` (a workload key) gets its capacity."""

    pod_key: str
    grace_s: int
    uid: str = ""
    requester: str = ""


@dataclass(frozen=True, slots=True)
class Pending:
    """The pod stays gated; ``reason`` is the message, ``cause`` the condition's CamelCase reason."""

    pod_key: str
    reason: str
    cause: str = "Waiting"
    uid: str = ""


Action = Ungate | Burst | Evict | Pending


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


def ungate_patch(obj: Mapping[str, Any], node: str, planned: Sequence[str],
                 annotations: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Gate off, affinity to ``node``, and the plan's nodes (a gang's, for the extender) annotated
    with ``annotations`` (a GPU pod's slots, a share's group)."""
    annotate = set_entries(obj, ("metadata", "annotations"),
                           {PLANNED_NODES_ANNOTATION: ",".join(planned), **(annotations or {})})
    return [*gate_ops(obj), *affinity_ops(obj.get("spec") or {}, [node]), *annotate]


def _no_mig_slot(profile: str) -> str:
    return (f"no node has a free MIG instance of {profile}; slotwise does not repartition GPUs itself: an admin "
            f"can plan layouts for the waiting demand with 'slotwise mig plan --demand {profile}=N --layout "
            "<reported layouts>' and apply them")


def _workload_key(pod: Pod, classes: Mapping[WorkloadKind, WorkloadClass]) -> str:
    """The key the store charges the pod under: its gang's, or its own."""
    try:
        m = membership(pod, classes=classes)
    except GangError:
        return pod.key
    return m.key if m is not None else pod.key


class _WorkloadKeys:
    """Each pod's workload key, worked out once per pod object. The cache hands out the same
    immutable Pod until the pod changes; reading the gang annotations of every cached pod in
    every cycle was the loop's largest cost with thousands of pods bound."""

    def __init__(self, classes: Mapping[WorkloadKind, WorkloadClass]):
        self.classes = classes
        self._known: dict[str, tuple[Pod, str]] = {}  # uid -> the pod object read, its key

    def of(self, pod: Pod) -> str:
        return self._read(pod, self._known)

    def live(self, pods: Iterable[Pod]) -> set[str]:
        """The keys of ``pods``, every pod the cache holds: what it no longer holds is forgotten."""
        before, self._known = self._known, {}
        return {self._read(pod, before) for pod in pods}

    def _read(self, pod: Pod, known: Mapping[str, tuple[Pod, str]]) -> str:
        seen = known.get(pod.uid)
        if seen is None or seen[0] is not pod:
            seen = (pod, _workload_key(pod, self.classes))
        self._known[pod.uid] = seen
        return seen[1]


@dataclass(frozen=True, slots=True)
class _Trial:
    """One cycle's what-if state: each unit placed takes its room (and MIG instances) here, so
    the units after it never get the same."""

    snapshot: Snapshot
    placer: Placer
    topology: Topology | None
    fleet: Fleet | None
    #: GPU share groups by node and GPU slot: those the cached pods and the shares ungated here name,
    #: and those made this cycle.
    groups: dict[tuple[str, int], str]
    #: The room-freeing changes the snapshot reflects (:attr:`ClusterCache.freed` and the loop's
    #: own); None where the caller does not know them: then every unit is placed afresh.
    freed: int | None = None


@dataclass(frozen=True, slots=True)
class _Unit:
    """One admission decision: a pod on its own, or a whole gang."""

    key: str
    members: tuple[Gated, ...]
    gang: Gang | None

    @property
    def pods(self) -> tuple[Pod, ...]:
        return tuple(g.pod for g in self.members)

    @property
    def order(self) -> tuple[int, float, str]:
        return (-max(g.pod.priority for g in self.members), min(g.created for g in self.members), self.key)


@dataclass(frozen=True, slots=True)
class _NoRoom:
    """A unit no node could take, remembered so that a full cluster's backlog is not placed
    again, for nothing, in every cycle: at 1,213 nodes two hundred such pods made each cycle seconds
    long, and every pod arriving behind them waited that long for its gate."""

    freed: int  # the room-freeing changes its snapshot reflected
    until: float  # when it is decided again regardless
    pods: tuple[Pod, ...]
    gang: Gang | None
    actions: list[Action]

    def holds(self, unit: _Unit, freed: int | None, now: float) -> bool:
        return (freed == self.freed and now < self.until and self.gang == unit.gang
                and self.pods == unit.pods)


def _timed_out_before(unit: _Unit) -> TimedOut | None:
    """A timeout recorded in a member's condition: a gang that gave up stays so across restarts."""
    for g in unit.members:
        for c in (g.obj.get("status") or {}).get("conditions") or []:
            if c.get("type") == CONDITION and c.get("reason") == TIMED_OUT:
                return TimedOut(unit.key, c.get("message", ""), ())
    return None


#: Gate patches in flight at once: enough to hide the API server's round trip, few enough not to crowd it.
PATCH_WORKERS = 8


def _went_through(action: Action, future: Future[bool]) -> bool:
    if future.cancelled():  # the loop stopped first
        return False
    if (exc := future.exception()) is not None:
        log.error("lifting the gate of %s failed", action.pod_key, exc_info=exc)
        return False
    return future.result()


def _failed(action: Action, exc: Exception) -> None:
    """An API call that failed (the pod gone, a PDB refusing, the connection cut): the rest go on."""
    if isinstance(exc, ApiException):
        log.warning("%s %s failed: %s %s", type(action).__name__, action.pod_key, exc.status, exc.reason)
    else:
        log.warning("%s %s failed: %s", type(action).__name__, action.pod_key, exc)


class AdmissionLoop:
    def __init__(self, cache: ClusterCache, kube: Kube, store: Store, placer_profile: str = "default",
                 burst: BurstConfig | None = None, clock: Callable[[], float] = time.time, interval_s: float = 2.0,
                 batch_s: float = 0.2, patch_workers: int = PATCH_WORKERS,
                 classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES,
                 metrics: ServiceMetrics | None = None, mig: FleetSource | None = None,
                 reservations: ReservationSettings = ReservationSettings(), leader: Elector | None = None):
        """``mig``: the fleet MIG pods are placed on (none: by resource counts only);
        ``reservations``: how GPU share groups' reservation pods are made; ``leader``: decide
        only while it leads, through the store fenced with the epoch of its term (none: always)."""
        self.cache = cache
        self.kube = kube
        self.store = store
        self.leader = leader
        self._unfenced = store
        self._term = 0
        self.classes = classes
        self._keys = _WorkloadKeys(classes)
        self.metrics = metrics
        self.profiles = LiveProfile(cache, placer_profile, classes)
        self._placer: Placer | None = None
        self.mig = mig
        self.reservations = reservations
        self._reservation_room = reservation_room(reservations)  # built once, named per group when placed
        self.shares = ShareReconciler(kube, metrics, clock)
        self.burst = burst
        self.clock = clock
        self.interval_s, self.batch_s = interval_s, batch_s
        self.patch_workers = patch_workers
        self._denied: dict[str, QuotaConfig] = {}  # key -> the configuration that denied it: not asked again until it changes
        self._reclaiming: dict[str, tuple[str, frozenset[str]]] = {}  # key -> its reclaim's message and victims' keys
        self._told: dict[str, str] = {}  # pod key -> the reason last written to it
        self._timed_out: dict[str, TimedOut] = {}  # gang key -> why it gave up: never tried again
        self._refused: dict[str, Evict] = {}  # pod key -> an eviction a PodDisruptionBudget refused: retried
        self._evicted_at: dict[str, float] = {}  # pod uid -> when its eviction last went through
        self._lifted: set[str] = set()  # uids of pods whose gate came off, until the cache sees it gone
        self._assumed: dict[str, Ungate] = {}  # pods ungated here, until the cache shows them bound or gone
        self._no_room: dict[str, _NoRoom] = {}  # unit key -> what it was told when no node could take it
        self._unplanned = 0  # room planned here that never came to be taken: a failed lift, an assumed pod gone
        self._patcher: ThreadPoolExecutor | None = None
        self._in_flight: list[tuple[Ungate | Burst, Future[bool]]] = []  # gate patches sent, not yet answered
        self._topology_of: tuple[tuple[Node, ...], Topology] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Planning -------------------------------------------------------------------------------------
    def plan(self, snapshot: Snapshot, gated_pods: Sequence[Gated], now: float, freed: int | None = None) -> list[Action]:
        """Decide every gated unit, highest priority then oldest first, each seeing the ones before.
        ``freed``: the room-freeing changes ``snapshot`` reflects; given, a unit that fit nowhere
        is not placed again until it changes (or :data:`NO_ROOM_RETRY_S` passes)."""
        ledger = self.store.ledger()
        admitted = set(ledger.workloads)
        config = ledger.config
        actions: list[Action] = []
        units, problems = self._units(gated_pods)
        actions += problems
        gangs = any(u.gang for u in units)
        # Gang keys of running pods, worked out only when a gang waits: a pass over every pod.
        running = {self._keys.of(a.pod) for a in snapshot.assignments.values()} if gangs else set()
        trial = self._trial(snapshot, gangs, [g.pod for g in gated_pods], freed)
        for unit in sorted(units, key=lambda u: u.order):
            try:
                actions += self._plan_unit(trial, unit, admitted, now, config, snapshot, unit.key in running)
            except Fenced:
                raise
            except Exception as exc:  # one unit's failure (a bug, a store error) never stalls the others
                log.exception("deciding %s failed", unit.key)
                actions += [Pending(g.pod.key, f"slotwise could not decide it ({type(exc).__name__}: {exc}); "
                                               "retried every cycle, the details are in slotwise's log",
                                    "DecisionFailed", g.pod.uid) for g in unit.members]
        return actions

    def _plan_unit(self, trial: _Trial, unit: _Unit, admitted: set[str], now: float, config: QuotaConfig,
                   snapshot: Snapshot, members_run: bool) -> list[Action]:
        grace_s = config.reclaim.grace_s
        if unit.gang is not None and members_run:
            # Members run already (gates lifted before a restart, a member recreated): the gang
            # is past all-or-nothing and its charge stands; the rest are placed one by one.
            return [a for g in unit.members
                    for a in self._decide(trial, _Unit(unit.key, (g,), None), admitted, now, config, snapshot, grace_s)]
        actions: list[Action] = []
        timed_out = self._timed_out.get(unit.key) or _timed_out_before(unit)
        if timed_out is None:
            decided = self._decide(trial, unit, admitted, now, config, snapshot, grace_s)
            timed_out = self._give_up(unit, decided, admitted, now)
            if timed_out is not None:
                self.store.record(ACTOR, "gang.timeout", unit.key, {"reason": timed_out.reason})
            # Victims the store has marked for eviction go even if the gang gives up now.
            actions += decided if timed_out is None else [a for a in decided if isinstance(a, Evict)]
        if timed_out is not None:
            self._timed_out[unit.key] = timed_out
            actions += [Pending(g.pod.key, timed_out.reason, TIMED_OUT, g.pod.uid) for g in unit.members]
        return actions

    def _placer_for(self, deciding: Sequence[Pod]) -> Placer:
        """A placer over the profile's current workload, kept while that does not change."""
        profile = self.profiles.current(deciding)
        if self._placer is None or self._placer.profile is not profile:
            self._placer = Placer(profile)
        return self._placer

    def _trial(self, snapshot: Snapshot, gangs: bool, deciding: Sequence[Pod], freed: int | None) -> _Trial:
        placer = self._placer_for(deciding)
        trial = snapshot.copy()
        topology = self._topology(trial) if gangs else None
        # The groups of shares ungated here and not bound yet too: their reservations may not be either.
        groups = held_groups(self.cache.share_pods()) | {(u.node, u.gpus[0]): u.group for u in self._assumed.values()
                                                   if u.group and u.gpus}
        if self.mig is None:
            return _Trial(trial, placer, topology, None, groups, freed)
        fleet = self.mig().copy()
        return _Trial(trial, mig_placer(fleet, placer.profile), topology, fleet, groups, freed)

    def _topology(self, snapshot: Snapshot) -> Topology:
        """The topology of the snapshot's nodes, rebuilt only when the node set changes (the cache
        makes a new snapshot, with a new nodes tuple, then; copies share it)."""
        if self._topology_of is None or self._topology_of[0] is not snapshot.nodes:
            self._topology_of = (snapshot.nodes, Topology(snapshot))
        return self._topology_of[1]

    def _units(self, gated: Iterable[Gated]) -> tuple[list[_Unit], list[Action]]:
        buckets: dict[str, list[Gated]] = {}
        problems: list[Action] = []
        pod_groups = self.cache.pod_groups()
        for g in gated:
            try:
                m = membership(g.pod, pod_groups, self.classes)
            except GangError as exc:
                problems.append(Pending(g.pod.key, str(exc), "InvalidGang", g.pod.uid))
                continue
            buckets.setdefault(m.key if m else g.pod.key, []).append(g)
        units = []
        for members in buckets.values():
            by_key = {g.pod.key: g for g in members}
            try:
                gangs, alone = group_gangs((g.pod for g in members), pod_groups, self.classes)
            except GangError as exc:
                problems += [Pending(g.pod.key, str(exc), "InvalidGang", g.pod.uid) for g in members]
                continue
            units += [_Unit(gang.key, tuple(by_key[p.key] for p in gang.members), gang) for gang in gangs]
            units += [_Unit(p.key, (by_key[p.key],), None) for p in alone]
        return units, problems

    def _decide(self, trial: _Trial, unit: _Unit, admitted: set[str], now: float, config: QuotaConfig,
                snapshot: Snapshot, grace_s: float) -> list[Action]:
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
                running = self._pods_by_workload(snapshot)
                evictions: list[Action] = [Evict(p.key, int(grace_s), p.uid, unit.key) for v in decision.victims
                                           for p in running.get(v.key, ())]
                message = f"{decision.reason}; waiting for them to stop"
                self._reclaiming[unit.key] = (message, frozenset(v.key for v in decision.victims))
                return evictions + pending(message, "Reclaiming")
        no_room = self._no_room.get(unit.key)
        if no_room is not None and no_room.holds(unit, trial.freed, now):
            return no_room.actions
        placed = self._place(trial, unit)
        if isinstance(placed, tuple):
            if (message := self._still_reclaiming(unit.key, snapshot)) is not None:
                return pending(message, "Reclaiming")
            actions = self._burst_or(unit, now, True, *placed)
            until = self._decided_again(trial, unit, now)
            if trial.freed is not None and until is not None and placed[1] == "NoCapacity" \
                    and all(isinstance(a, Pending) for a in actions):
                self._no_room[unit.key] = _NoRoom(trial.freed, until, unit.pods, unit.gang, actions)
            return actions
        planned = list(dict.fromkeys(placed.values()))
        return [self._ungate(trial, g, placed[g.pod.key], planned) if g.pod.key in placed
                else Pending(g.pod.key, f"gang {unit.key} runs at its minimum; no room for this member", "NoCapacity",
                             g.pod.uid)
                for g in unit.members]

    def _decided_again(self, trial: _Trial, unit: _Unit, now: float) -> float | None:
        """When a unit that fit nowhere must be decided again even if no room was freed; None for
        every cycle: MIG pods (their instances come from agents' reports, which the cache does not
        count) and units past their overflow threshold (the burst budget may change meanwhile)."""
        if trial.fleet is not None and any(requested_profile(g.pod)[0] for g in unit.members):
            return None
        if self.burst is None:
            return now + NO_ROOM_RETRY_S
        due = min(g.created for g in unit.members) + self.burst.threshold_s
        return min(now + NO_ROOM_RETRY_S, due) if due > now else None

    def _still_reclaiming(self, key: str, snapshot: Snapshot) -> str | None:
        """The reclaim's message while one of its victims still runs: the room is on its way, so
        neither "no node can take it" nor an overflow is the answer yet."""
        reclaim = self._reclaiming.get(key)
        if reclaim is None:
            return None
        running = self._pods_by_workload(snapshot)
        if any(victim in running for victim in reclaim[1]):
            return reclaim[0]
        del self._reclaiming[key]
        return None

    def _ungate(self, trial: _Trial, g: Gated, node: str, planned: Sequence[str]) -> Ungate:
        """The pod's GPU slots are annotated (the model reads them back after a restart); a share
        joins the group of its GPU, or starts one with a reservation pod."""
        pod = g.pod
        gpus = trial.snapshot.assignments[pod.key].gpus
        group, annotations, reservation = "", {}, None
        if pod.gpu is not None and pod.gpu.shared:
            group, annotations, reservation = plan_share(pod, node, gpus[0], trial.groups, self.reservations)
            if reservation is not None:  # its CPU and memory count on the node, for kube-scheduler too
                with suppress(ValueError):  # a gang member, planned without that check: kubelet admission decides
                    trial.snapshot.assign(replace(self._reservation_room, name=group), trial.snapshot.index[node])
        elif gpus:
            annotations = {GPU_INDICES_ANNOTATION: ",".join(map(str, gpus))}
        return Ungate(pod.key, ungate_patch(g.obj, node, planned, annotations), pod.uid, node, group, reservation,
                      pod, tuple(gpus))

    def _give_up(self, unit: _Unit, decided: Sequence[Action], admitted: set[str], now: float) -> TimedOut | None:
        """A gang's timeout, as :class:`scheduler.gang.queue.GangQueue` keeps it: a gang not placed
        (incomplete, or short of quota or room) ``timeout_s`` after its first member was created
        gives up. Its quota charge goes back so other work can use it, and it is not tried again;
        its pods are left, gated, saying why (deleting them is their owner's call)."""
        gang = unit.gang
        if gang is None or any(isinstance(a, Ungate | Burst) for a in decided):
            return None
        # A denial is final already (told once; asked again only under a new configuration).
        waiting = [a for a in decided if isinstance(a, Pending) and a.cause != "QuotaDenied"]
        waited = now - min(g.created for g in unit.members)
        if not waiting or waited < gang.timeout_s:
            return None
        if unit.key in admitted:
            self.store.release(unit.key, ACTOR)
            admitted.discard(unit.key)
        return TimedOut(unit.key, f"{waiting[0].reason}; gave up after waiting {waited:.0f} s (its timeout, from "
                                  f"{GANG_TIMEOUT_ANNOTATION} or its PodGroup's scheduleTimeoutSeconds, is "
                                  f"{gang.timeout_s:g} s): it holds no quota now and is not tried again; "
                                  "delete and recreate its pods to retry", ())

    def _place(self, trial: _Trial, unit: _Unit) -> dict[str, str] | tuple[str, str]:
        """Pod key -> node, committed to ``trial`` so later units see it; or why not, and the cause."""
        snap = trial.snapshot
        if unit.gang is not None:
            assert trial.topology is not None
            plan = plan_gang(trial.placer, snap, unit.gang, trial.topology)
            if not isinstance(plan, GangPlan):
                return plan.reason, "NoCapacity"
            placed = {a.pod.key: snap.names[a.node] for a in plan.assignments}
            short = self._take_instances(trial.fleet, [(a.pod, placed[a.pod.key]) for a in plan.assignments])
            if short is not None:
                return f"gang {unit.key}: {short}", "NoMigSlot"
            commit(snap, plan)
            return placed
        pod = unit.members[0].pod
        decision = share_groups.decide(trial.placer, snap, pod, trial.groups, self._reservation_room)
        if not isinstance(decision, Placement):
            profile, _ = requested_profile(pod)
            if trial.fleet is not None and profile is not None and trial.fleet.choose(profile) is None:
                return _no_mig_slot(profile), "NoMigSlot"
            return f"no node can take it: {decision.message}", "NoCapacity"
        short = self._take_instances(trial.fleet, [(pod, decision.node)])
        assert short is None, short  # the MIG filter kept only nodes with a free instance
        snap.assign(pod, decision.node_index, decision.gpus)
        return {pod.key: decision.node}

    @staticmethod
    def _take_instances(fleet: Fleet | None, placed: Sequence[tuple[Pod, str]]) -> str | None:
        """Bind each MIG pod's instance on its node in the trial fleet, all or none; or what is short.
        The placer checked each pod alone: two members of a gang may want one node's last instance."""
        if fleet is None:
            return None
        taken: list[str] = []
        for pod, node in placed:
            profile, _ = requested_profile(pod)
            if profile is None:
                continue
            choice = fleet.choose(profile, [node])
            if choice is None:
                for key in taken:
                    fleet.release(key)
                return f"no free {profile} instance left on {node} for {pod.name}"
            fleet.bind(pod.key, choice)
            taken.append(pod.key)
        return None

    def _burst_or(self, unit: _Unit, now: float, charged: bool, reason: str, cause: str) -> list[Action]:
        """Overflow to a burst target if configured and due, else wait with ``reason``."""
        pending = [Pending(g.pod.key, reason, cause, g.pod.uid) for g in unit.members]
        if self.burst is None:
            return pending
        pods = [g.pod for g in unit.members]
        at = datetime.fromtimestamp(now, UTC)
        waited = now - min(g.created for g in unit.members)
        # Before the threshold the answer is "stay" whatever the budget: spare the database the query.
        budget = self.store.budget_left(pods[0].project, at) if waited >= self.burst.threshold_s else None
        # Reserved already (the patch did not land: a crash, a failed write): that reservation stands.
        reserved = next((s.reserved for s in self.store.open_spend() if s.workload == unit.key), None) \
            if budget is not None else None
        left = budget[0] + (reserved or 0.0) if budget else None
        decision = decide_burst(self.burst, unit.key, pods, waited, None, left)
        if not isinstance(decision, Overflow):
            return [Pending(p.pod_key, f"{reason}; no overflow: {decision.reason}", cause, p.uid) for p in pending]
        if reserved is None:
            try:
                self.store.reserve_spend(decision.pool, unit.key, decision.offers[0].target.name, decision.reserved,
                                         at, ACTOR)
            except StoreError as exc:  # another admitter spent the budget meanwhile
                return [Pending(p.pod_key, f"{reason}; no overflow: {exc}", cause, p.uid) for p in pending]
        if charged:
            self.store.release(unit.key, ACTOR)  # it runs outside the cluster: its quota charge goes back
        objs = {g.pod.key: g.obj for g in unit.members}
        return [Burst(o.pod.key, gate_ops(objs[o.pod.key]) + burst_patch(objs[o.pod.key], o, self.burst.max_runtime_s),
                      o.pod.uid)
                for o in decision.offers]

    def _pods_by_workload(self, snapshot: Snapshot) -> dict[str, list[Pod]]:
        """The running pods under each workload key they answer to: their own and their gang's."""
        out: dict[str, list[Pod]] = {}
        for a in snapshot.assignments.values():
            for key in {a.pod.key, self._keys.of(a.pod)}:
                out.setdefault(key, []).append(a.pod)
        return out

    def _live(self, pods: Iterable[Pod] | None = None) -> set[str]:
        """Workload keys with a pod in the cache (which drops Succeeded and Failed pods)."""
        return self._keys.live(self.cache.pods() if pods is None else pods)

    def release_finished(self, live: set[str] | None = None) -> list[str]:
        """Give back the charge of admitted workloads with no pod left, evicted victims included.
        ``live``: the workload keys with a pod in the cache, if the caller has them already."""
        live = self._live() if live is None else live
        now = self.clock()
        done = [w.key for w in self.store.ledger().charged()
                if w.key not in live and now - w.admitted_at >= RELEASE_GRACE_S]
        for key in done:
            self.store.release(key, ACTOR)
        return done

    def settle_bursts(self, live: set[str] | None = None) -> list[str]:
        """Record what each burst cost once its pods have all left: the rate it reserved at (the
        offers' hourly prices; ``reserved`` covers them for ``max_runtime``) times the time from
        the overflow until now, never more than the reservation (the store caps it). Billed from
        the overflow rather than the pods' start, which the cache does not keep: the target bills
        an instance from its creation. Open reservations are read from the store, so those made
        before a restart are settled too."""
        if self.burst is None:
            return []  # the rate is unknown without max_runtime: the reservation stands
        live = self._live() if live is None else live
        now = self.clock()
        done = [s for s in self.store.open_spend()
                if s.workload not in live and now - s.started_at.timestamp() >= RELEASE_GRACE_S]
        for spend in done:
            hourly = spend.reserved / (self.burst.max_runtime_s / 3600)
            self.store.settle_spend(spend.workload, hourly * (now - spend.started_at.timestamp()) / 3600, ACTOR)
        return [s.workload for s in done]

    # Effects --------------------------------------------------------------------------------------
    def apply(self, actions: Iterable[Action], wait_lifts: bool = True) -> None:
        """Perform each action; one failing (the pod gone, a PDB refusing eviction) never stops the
        rest. Stops if the lease lapses meanwhile: what is left is the next leader's to decide.

        Gates are lifted together: the placements are recorded first, in one transaction (a crash
        before the patches leaves decisions taken again after the restart, never a pod placed with
        no trace in the trail), then the patches go out ``patch_workers`` at a time, each while
        the lease holds. ``wait_lifts`` False returns once they are sent: the pods are taken as
        lifted, their room as taken, until an answer says otherwise (:meth:`_answered`), so the
        next cycle decides the pods that arrived meanwhile instead of waiting out the API server's
        round trips (three quarters of a cycle at 50 pods/s)."""
        actions = list(actions)
        lifts = [a for a in actions if isinstance(a, Ungate | Burst)]
        if lifts:
            if not self._still_leading():
                return
            # A burst is in the trail already, as its spend.
            self.store.record_all(ACTOR, [("place", a.pod_key, {"node": a.node, **({"gpu_group": a.group} if a.group else {})})
                                          for a in lifts if isinstance(a, Ungate)])
            if self._patcher is None:
                self._patcher = ThreadPoolExecutor(self.patch_workers, thread_name_prefix="ungate")
            for action in lifts:
                self._in_flight.append((action, self._patcher.submit(self._lift, action)))
                self._told.pop(action.pod_key, None)
                self._lifted.add(action.uid)
                if isinstance(action, Ungate) and action.pod is not None:
                    self._assumed[action.pod_key] = action
            self._answered(wait_lifts)
        for action in actions:
            if isinstance(action, Ungate | Burst):
                continue
            if not self._still_leading():
                return
            namespace, name = action.pod_key.split("/", 1)
            try:
                if isinstance(action, Evict):
                    self._evict(namespace, name, action)
                elif self._told.get(action.pod_key) != action.reason:  # write a reason once, not every cycle
                    self.kube.create_event(namespace, name, action.uid, EVENT_REASON, action.reason)
                    self.kube.set_pod_condition(namespace, name, {
                        "type": CONDITION, "status": "False", "reason": action.cause, "message": action.reason,
                        "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
                    self._told[action.pod_key] = action.reason
            except (ApiException, HTTPError) as exc:
                _failed(action, exc)

    def _answered(self, wait_all: bool = False) -> None:
        """Take in the gate patches answered (every one sent, with ``wait_all``): a pod whose gate
        did not come off is decided again, and the room planned for it is free."""
        if wait_all:
            wait([future for _, future in self._in_flight])
        pending: list[tuple[Ungate | Burst, Future[bool]]] = []
        for action, future in self._in_flight:
            if not future.done():
                pending.append((action, future))
            elif not _went_through(action, future):
                self._lifted.discard(action.uid)
                if isinstance(action, Ungate):
                    self._assumed.pop(action.pod_key, None)
                    self._unplanned += 1
        self._in_flight = pending

    def _still_leading(self) -> bool:
        if self.leader is not None and not (self.leader.leading() and self.leader.term == self._term):
            log.warning("the lease lapsed during a cycle: its other actions are left to the next leader")
            return False
        return True

    def _lift(self, action: Ungate | Burst) -> bool:
        """Patch the gate off (a new GPU share group's reservation pod first); whether it went through."""
        if not self._still_leading():
            return False
        namespace, name = action.pod_key.split("/", 1)
        try:
            if isinstance(action, Ungate) and action.reservation is not None:
                self._reserve(action.reservation)
            self.kube.patch_pod(namespace, name, action.patch)
        except (ApiException, HTTPError) as exc:
            _failed(action, exc)
            return False
        return True

    def _reserve(self, reservation: dict[str, Any]) -> None:
        """Create a share group's reservation pod; one there already (a decision taken again
        after a restart) is the same group."""
        try:
            self.kube.create_pod(reservation["metadata"]["namespace"], reservation)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _evict(self, namespace: str, name: str, action: Evict) -> None:
        """Evict; one that a PodDisruptionBudget refuses for now (429) is kept to retry next cycle,
        and its pod is told why, once. A pod already gone (404) needs nothing more."""
        try:
            self.kube.evict(namespace, name, action.grace_s)
        except ApiException as exc:
            if exc.status != 429:
                self._refused.pop(action.pod_key, None)
                if exc.status == 404:
                    self._evicted_at[action.uid] = self.clock()
                    return
                raise
            log.info("eviction of %s refused by a PodDisruptionBudget; retrying", action.pod_key)
            first = action.pod_key not in self._refused
            self._refused[action.pod_key] = action
            if first:
                self.kube.create_event(namespace, name, action.uid, EVICTION_REFUSED,
                                       f"slotwise evicts it so that {action.requester} gets capacity its pool lent; "
                                       "a PodDisruptionBudget does not allow that now, so it is retried until it does",
                                       "Warning")
            return
        self._refused.pop(action.pod_key, None)
        self._evicted_at[action.uid] = self.clock()

    def _retries(self, snapshot: Snapshot) -> list[Evict]:
        """Refused evictions whose pod still runs (the same pod: a namesake is not a victim)."""
        self._refused = {k: e for k, e in self._refused.items()
                         if (a := snapshot.assignments.get(k)) is not None and a.pod.uid == e.uid}
        return list(self._refused.values())

    def _unfinished_evictions(self, snapshot: Snapshot, now: float) -> list[Evict]:
        """Evictions of victims the store has marked terminating whose pods still run, and that
        went through neither in this process nor within the grace period (and a margin) before:
        the reclaim decision is in the database, so an eviction lost to a crash or a transport
        error is sent again, after a restart too."""
        ledger = self.store.ledger()
        if self._evicted_at:  # a pass over every running pod, only when there are evictions to forget
            running = {a.pod.uid for a in snapshot.assignments.values()}
            self._evicted_at = {uid: at for uid, at in self._evicted_at.items() if uid in running}
        if not ledger.terminating:
            return []
        grace = ledger.config.reclaim.grace_s
        due: dict[str, Evict] = {}
        for key, pods in self._pods_by_workload(snapshot).items():
            late = [p for p in pods if key in ledger.terminating and p.key not in self._refused
                    and now - self._evicted_at.get(p.uid, -math.inf) >= grace + EVICTION_RESEND_S]
            if late:
                requester = next((e.detail.get("for", "") for e in self.store.audit(limit=10, subject=key)
                                  if e.action == "evict"), "")
                due |= {p.key: Evict(p.key, int(grace), p.uid, requester) for p in late}
        return list(due.values())

    def _assume(self, snapshot: Snapshot, cached: Sequence[Pod]) -> None:
        """Pods this loop ungated that the cache does not show bound yet hold their planned room
        in ``snapshot``, as kube-scheduler's assumed pods do, and so do the reservation pods of the
        share groups they started. Without them, a cycle that runs before kube-scheduler has bound
        the last cycle's pods plans the same room again, and kube-scheduler then finds it taken
        (Unschedulable, and back-off)."""
        unbound = {p.key for p in cached if p.node_name is None}
        for key, ungate in list(self._assumed.items()):
            if key not in unbound:  # bound (the snapshot accounts it) or gone
                del self._assumed[key]
                self._unplanned += key not in snapshot.assignments
                continue
            if ungate.node not in snapshot.index or ungate.pod is None:
                continue
            node = snapshot.index[ungate.node]
            if key not in snapshot.assignments:
                try:
                    snapshot.assign(ungate.pod, node, ungate.gpus or None)
                except ValueError:  # the cluster changed under it: kube-scheduler decides where it goes
                    del self._assumed[key]
                    self._unplanned += 1
                    continue
            if ungate.reservation is None:
                continue
            room = replace(self._reservation_room, name=ungate.group)
            if room.key not in snapshot.assignments:  # not bound yet
                with suppress(ValueError):  # as when it was planned: kubelet admission decides
                    snapshot.assign(room, node)

    def run_once(self, wait_lifts: bool = True) -> list[Action]:
        """One cycle: release and settle what finished, plan the gated pods, apply (refused
        evictions again first). Nothing until the cache is synced and knows the PodGroups (or that
        their CRDs are missing): a gang decided before its PodGroup is read could start short.
        ``wait_lifts``: return only once the cycle's gate patches are answered (see :meth:`apply`)."""
        if not (self.cache.synced and self.cache.pod_groups_known):
            return []
        self._answered()
        now = self.clock()
        held = self.cache.gated(ADMISSION_GATE)
        # A pod whose gate we lifted looks gated until the watch brings the change: deciding it again
        # would charge (or burst) it twice.
        self._lifted &= {pod.uid for pod, _ in held}
        gated = [Gated.of(pod, obj, now) for pod, obj in held if pod.uid not in self._lifted]
        cached = self.cache.pods()  # before the snapshot: a pod bound in between is in the snapshot
        with self.cache.snapshot() as live:
            snapshot = live.copy()  # plan outside the cache's lock: the extender reads it meanwhile
            freed = self.cache.freed
        self._assume(snapshot, cached)
        live = self._live(cached)  # one pass over every cached pod's gang membership, not one per use
        self.release_finished(live)
        self.settle_bursts(live)
        unfinished = self._unfinished_evictions(snapshot, now)  # before planning marks new victims
        # One transaction for the cycle's admissions, committed before any gate is lifted; none
        # when nothing waits: the transaction holds the store's row lock, and a leader paused
        # while holding it would keep a new leader from taking its epoch until it resumed.
        with self.metrics.timed("admit") if self.metrics is not None else nullcontext(), \
                self.store.batch() if gated else nullcontext():
            planned = self.plan(snapshot, gated, now, freed + self._unplanned)
        actions: list[Action] = [*self._retries(snapshot), *unfinished, *planned]
        self.apply(actions, wait_lifts)
        lifting = [*actions, *(a for a, _ in self._in_flight)]
        self.shares.reconcile(self.cache.share_pods(), {a.group for a in lifting if isinstance(a, Ungate) and a.group})
        if self.metrics is not None:
            self.metrics.set_pending(Counter(a.cause for a in actions if isinstance(a, Pending)))
        keys = {g.pod.key for g in gated}
        self._told = {k: v for k, v in self._told.items() if k in keys}
        units = {self._keys.of(g.pod) for g in gated}
        self._denied = {k: v for k, v in self._denied.items() if k in units}
        self._reclaiming = {k: v for k, v in self._reclaiming.items() if k in units}
        self._no_room = {k: v for k, v in self._no_room.items() if k in units}
        self._timed_out = {k: v for k, v in self._timed_out.items() if k in units}
        return actions

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="admission-loop")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.cache.gated_arrived.set()  # out of its wait at once
        if self._thread is not None:
            self._thread.join(timeout)
        if self._patcher is not None:
            self._patcher.shutdown(wait=False, cancel_futures=True)
            self._patcher = None

    def may_decide(self) -> bool:
        """Always without an elector. With one, only while it leads; a new term first takes a new
        fencing epoch, so that the store refuses the writes of any replica that led before."""
        if self.leader is None:
            return True
        if not self.leader.leading():
            return False
        if self._term != self.leader.term:
            self.store = self._unfenced.fenced(self._unfenced.take_leadership(self.leader.identity))
            self._term = self.leader.term
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                leading = self.may_decide()
                if self.metrics is not None:
                    self.metrics.leader.set(leading)
                if leading:
                    self.run_once(wait_lifts=False)
            except Fenced as exc:
                log.warning("not deciding: %s", exc)
            except Exception:  # the API server or database being away must not kill the loop
                log.exception("admission cycle failed")
            self._wait()

    def _wait(self) -> None:
        """Until the interval has passed or a gated pod arrives; then ``batch_s`` more, so that pods
        created together are decided in one cycle (a gang's members among them). Cleared before
        the cycle: a pod arriving during it wakes the next wait at once."""
        if self.cache.gated_arrived.wait(self.interval_s):
            self._stop.wait(self.batch_s)
        self.cache.gated_arrived.clear()
