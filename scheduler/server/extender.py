"""kube-scheduler's HTTP extender (extender v1, ``nodeCacheCapable: true``): filter, prioritize,
bind and preempt, reading slotwise's cluster cache only.

Keys are PascalCase as the v1 Go types (no JSON tags) marshal them. Every verb answers 200 with
the v1 reply, or a 4xx with ``{"detail": ...}`` for a request it cannot read: kube-scheduler counts
any non-200 as an extender error, and a 500 would hide whose fault it was.

Given the fleet MIG node reports describe, a pod asking a MIG instance also needs a free valid
slot for its profile (a shortage: eviction can free one), and the slot score joins the profile.

Preempt is deliberately conservative: for each node kube-scheduler proposes, slotwise keeps the
proposed victims unchanged when evicting them (on a copy of the snapshot) lets the pod pass
slotwise's filters there, and drops the node otherwise. It never adds victims or nodes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from mig.plugin import FleetSource, MigSlotFilter, requested_profile, with_mig_score
from scheduler.model.cluster import Pod, WorkloadKind
from scheduler.model.k8s_json import ModelError, pod_from_k8s
from scheduler.model.snapshot import Snapshot
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from scheduler.placement.decision import Rejections
from scheduler.placement.engine import Placer
from scheduler.placement.filters import (
    Filter,
    GpuFit,
    GpuModel,
    NodeAffinity,
    ResourcesFit,
    TaintToleration,
)
from scheduler.placement.profile import build_profile
from scheduler.server.cache import ClusterCache
from scheduler.server.metrics import VERBS, ServiceMetrics

#: Set by the admission loop on gang members: the nodes of the gang's placement plan.
PLANNED_NODES_ANNOTATION = "slotwise.io/planned-nodes"
MAX_EXTENDER_PRIORITY = 10
MAX_BODY_BYTES = 4 * 2**20
T = TypeVar("T")

#: Failures no eviction can cure go to FailedAndUnresolvableNodes; shortages to FailedNodes.
UNRESOLVABLE_FILTERS = (TaintToleration(), NodeAffinity(), GpuModel())
RESOLVABLE_FILTERS = (ResourcesFit(), GpuFit())


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes before reading them all (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):  # "²" is a digit to isdigit
        raise HTTPException(400, f"Content-Length {declared!r} is not a number")
    if declared is not None and int(declared) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
    try:
        return orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise HTTPException(400, f"body is not JSON: {exc}") from None


def _field(args: Any, key: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
    if not isinstance(args, Mapping):
        raise HTTPException(400, f"expected a JSON object, got {type(args).__name__}")
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        raise HTTPException(400, f"{key}: expected {getattr(kind, '__name__', 'object')}, got {type(value).__name__}")
    return value


def _parse_pod(raw: dict[str, Any]) -> Pod:
    try:
        return pod_from_k8s(raw)
    except (ModelError, RecursionError) as exc:
        raise HTTPException(400, f"Pod: {exc}") from None


def _names(args: Any) -> list[str]:
    """NodeNames (nodeCacheCapable); a full ``Nodes`` list is read for its names only."""
    names = _field(args, "NodeNames", list, required=False)
    if names is None:
        nodes = _field(args, "Nodes", dict, required=False) or {}
        items = nodes.get("items") or []
        names = [n.get("metadata", {}).get("name") if isinstance(n, dict) else None for n in items]
    if set(map(type, names)) - {str}:  # map(type) runs in C: this is on every scheduling cycle
        raise HTTPException(400, "NodeNames: expected a list of strings")
    return names


def _located(snap: Snapshot, names: list[str]) -> tuple[list[str], np.ndarray]:
    """``names`` without repeats, and each one's snapshot index (-1: not in the cache)."""
    index = snap.index
    try:  # every name known: the lookup runs in C
        position = np.fromiter(map(index.__getitem__, names), dtype=np.int64, count=len(names))
    except KeyError:
        position = np.array([index.get(n, -1) for n in names], dtype=np.int64)
    known = position[position >= 0]
    if len(known) and np.bincount(known).max() > 1:
        names = list(dict.fromkeys(names))
        position = np.array([index.get(n, -1) for n in names], dtype=np.int64)
    position.flags.writeable = False  # shared by later requests with the same names
    return names, position


class _Recent(Generic[T]):
    """The last few inputs and what was derived from each. kube-scheduler sends a pod to filter
    and then to prioritize, and mostly the same node list every cycle: comparing with what came
    before costs far less than parsing the pod or hashing 5,000 fresh names again."""

    def __init__(self, size: int = 4):
        self._seen: deque[tuple[Any, T]] = deque(maxlen=size)

    def get(self, key: Any, derive: Callable[[], T]) -> T:
        for seen, value in self._seen:
            if seen == key:
                return value
        value = derive()
        self.put(key, value)
        return value

    def put(self, key: Any, value: T) -> None:
        self._seen.appendleft((key, value))


def _planned(pod: Pod) -> set[str] | None:
    text = pod.annotations.get(PLANNED_NODES_ANNOTATION)
    return None if text is None else {n.strip() for n in text.split(",") if n.strip()}


@dataclass
class _Failures:
    """Nodes one verdict (shortage, or not curable by eviction) covers: by name where slotwise's
    filters never saw them, and as the engine's rejections, kept as arrays until encoded."""

    named: dict[str, str] = field(default_factory=dict)
    rejected: list[Rejections] = field(default_factory=list)

    def json(self, encoded: np.ndarray) -> bytes:
        """The ``{"node": "reasons", ...}`` object; ``encoded`` holds each snapshot name as JSON."""
        parts = [orjson.dumps(self.named)[1:-1]] if self.named else []
        for rejections in self.rejected:
            nodes, labels, texts = rejections.labelled()
            for label, text in enumerate(texts):
                members = encoded[nodes[labels == label]].tolist()
                if members:
                    reason = b":" + orjson.dumps(text)
                    parts.append((reason + b",").join(members) + reason)
        return b"{" + b",".join(parts) + b"}"


class Extender:
    def __init__(self, cache: ClusterCache, profile_name: str,
                 classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES, mig: FleetSource | None = None):
        self.cache = cache
        profile = build_profile(profile_name, classes=classes)
        resolvable: tuple[Filter, ...] = RESOLVABLE_FILTERS
        if mig is not None:  # only then: pods without MIG pay nothing for it
            profile = with_mig_score(mig, profile)
            resolvable = (*resolvable, MigSlotFilter(mig))
        self.mig = mig
        self.scorer = Placer(profile)
        self.unresolvable = Placer(profile, UNRESOLVABLE_FILTERS)
        self.resolvable = Placer(profile, resolvable)
        self._names_json: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=object))
        self._pods: _Recent[Pod] = _Recent()
        self._names: _Recent[tuple[list[str], np.ndarray]] = _Recent()

    def _pod(self, args: Any) -> Pod:
        raw = _field(args, "Pod", dict)
        return self._pods.get(raw, lambda: _parse_pod(raw))

    def _located(self, snap: Snapshot, args: Any) -> tuple[list[str], np.ndarray]:
        """The request's node names without repeats, and each one's snapshot index (-1: unknown)."""
        raw = args.get("NodeNames") if isinstance(args, Mapping) else None
        if not isinstance(raw, list):
            return _located(snap, _names(args))
        return self._names.get((snap.uid, raw), lambda: _located(snap, _names(args)))

    def feasible(self, snap: Snapshot, pod: Pod, names: list[str], position: np.ndarray,
                 resolvable: Placer | None = None) -> tuple[list[str], np.ndarray, _Failures, _Failures]:
        """Of ``names`` (at snapshot ``position``, -1 if unknown): those passing every filter, in
        input order, and their positions; then shortages, then failures eviction cannot fix.
        ``resolvable`` replaces the shortage filters (a trial after evictions)."""
        failed = _Failures({names[k]: "node not in slotwise's cache yet" for k in np.flatnonzero(position < 0).tolist()})
        hopeless = _Failures()
        candidate = position >= 0
        planned = _planned(pod)
        if planned is not None:
            outside = candidate & ~np.array([n in planned for n in names], dtype=bool)
            hopeless.named = {names[k]: "node not in the pod's gang placement plan" for k in np.flatnonzero(outside).tolist()}
            candidate &= ~outside
        rest = position[candidate]
        for placer, out in ((self.unresolvable, hopeless), (resolvable or self.resolvable, failed)):
            if len(rest):
                result = placer.filter(snap, pod, rest)
                out.rejected.append(result.rejections)
                rest = result.feasible
        passed = np.zeros(len(snap), dtype=bool)
        passed[rest] = True
        keep = np.flatnonzero(candidate)
        keep = keep[passed[position[keep]]]
        return [names[k] for k in keep.tolist()], position[keep], failed, hopeless

    def filter(self, args: Any) -> bytes:
        pod = self._pod(args)
        with self.cache.snapshot() as snap:
            kept, where, failed, hopeless = self.feasible(snap, pod, *self._located(snap, args))
            where.flags.writeable = False
            self._names.put((snap.uid, kept), (kept, where))  # prioritize is sent exactly these names
            encoded = self._encoded(snap)
        return (b'{"Nodes":null,"NodeNames":' + orjson.dumps(kept) + b',"FailedNodes":' + failed.json(encoded)
                + b',"FailedAndUnresolvableNodes":' + hopeless.json(encoded) + b',"Error":""}')

    def prioritize(self, args: Any) -> bytes:
        """The profile's 0..100 score scaled to 0..10, as the encoded HostPriorityList; names
        slotwise does not know are left out (kube-scheduler counts them 0)."""
        pod = self._pod(args)
        with self.cache.snapshot() as snap:
            _, position = self._located(snap, args)
            nodes = position[position >= 0]
            total, _ = self.scorer.score(snap, pod, nodes) if len(nodes) else (np.zeros(0), [])
            encoded = self._encoded(snap)
        scores = np.clip(np.rint(total * MAX_EXTENDER_PRIORITY / 100), 0, MAX_EXTENDER_PRIORITY).astype(np.int64)
        # Scores take at most 11 values: join each score's hosts in C instead of building 5,000 dicts.
        parts = [b'{"Host":' + (b',"Score":%d},{"Host":' % s).join(encoded[nodes[scores == s]].tolist())
                 + b',"Score":%d}' % s for s in np.flatnonzero(np.bincount(scores)).tolist()]
        return b"[" + b",".join(parts) + b"]"

    def _encoded(self, snap: Snapshot) -> np.ndarray:
        """Each snapshot node's name as a JSON string (an object array, to gather in C), encoded
        once per snapshot (node set)."""
        if self._names_json[0] != snap.uid:
            self._names_json = (snap.uid, np.array([orjson.dumps(n) for n in snap.names], dtype=object))
        return self._names_json[1]

    def preempt(self, args: Any) -> dict[str, Any]:
        pod = self._pod(args)
        proposed = _field(args, "NodeNameToMetaVictims", dict, required=False) or {}
        agreed: dict[str, Any] = {}
        with self.cache.snapshot() as live:
            trial = live.copy()  # one copy: each node's victims are released, judged, then put back
        for node, victims in proposed.items():
            uids = self._victim_uids(node, victims)
            if node not in trial.index:
                continue
            keys = [k for k in dict.fromkeys(map(self.cache.pod_key, uids)) if k is not None and k in trial.assignments]
            evicted = [trial.release(k) for k in keys]
            resolvable = (self._after_evicting(node, [a.pod for a in evicted])
                          if self.mig is not None and requested_profile(pod)[0] else None)
            kept, *_ = self.feasible(trial, pod, [node], np.array([trial.index[node]]), resolvable)
            for a in evicted:
                trial.assign(a.pod, a.node, a.gpus)
            if kept:
                agreed[node] = victims
        return {"NodeNameToMetaVictims": agreed}

    def _after_evicting(self, node: str, victims: list[Pod]) -> Placer:
        """The shortage filters on a trial fleet where the MIG instances ``victims`` hold on
        ``node`` are idle (layouts are fixed: an evicted 2g frees a 2g, nothing else)."""
        assert self.mig is not None
        fleet = self.mig().copy()
        for victim in victims:
            held, _ = requested_profile(victim)
            if held is not None:
                fleet.vacate(node, held)
        return Placer(self.resolvable.profile, (*RESOLVABLE_FILTERS, MigSlotFilter(fleet)))

    @staticmethod
    def _victim_uids(node: str, victims: Any) -> list[str]:
        pods = _field(victims, "Pods", list, required=False) or []
        uids = [p.get("UID") if isinstance(p, dict) else None for p in pods]
        if not all(isinstance(u, str) for u in uids):
            raise HTTPException(400, f"NodeNameToMetaVictims.{node}.Pods: expected [{{\"UID\": string}}]")
        return uids

    def bind(self, args: Any) -> dict[str, str]:
        name, namespace = _field(args, "PodName", str), _field(args, "PodNamespace", str)
        uid, node = _field(args, "PodUID", str, required=False) or "", _field(args, "Node", str)
        if self.cache.kube is None:
            return {"Error": "slotwise has no Kubernetes client to bind with"}
        try:
            self.cache.kube.bind(namespace, name, uid, node)
        except Exception as exc:  # noqa: BLE001 - the reply carries any bind failure to kube-scheduler
            return {"Error": f"binding {namespace}/{name} to {node}: {exc}"}
        return {"Error": ""}


def extender_router(cache: ClusterCache, profile_name: str = "default",
                    classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES,
                    metrics: ServiceMetrics | None = None, mig: FleetSource | None = None) -> APIRouter:
    """The four verbs under ``/extender``; ``urlPrefix`` in KubeSchedulerConfiguration points here.
    ``metrics`` times filter and prioritize; ``mig`` gives the fleet MIG pods are placed on."""
    extender = Extender(cache, profile_name, classes, mig)
    router = APIRouter()
    verbs = {"filter": extender.filter, "prioritize": extender.prioritize,
             "preempt": extender.preempt, "bind": extender.bind}

    # A plain Starlette route: FastAPI's parameter machinery costs more than it gives for a body
    # that is read by hand anyway, on the one endpoint called twice per scheduling cycle.
    async def call(request: Request) -> Response:
        verb = request.path_params["verb"]
        handler = verbs.get(verb)
        if handler is None:
            raise HTTPException(404, f"unknown extender verb {verb!r}; expected one of {', '.join(verbs)}")
        # bind is the only verb that waits on the API server: keep it off the event loop.
        if verb == "bind":
            reply = await run_in_threadpool(handler, await read_json(request))
        else:  # timed from the body's first byte: reading and parsing 5,000 names is slotwise's time too
            with metrics.timed(verb) if metrics is not None and verb in VERBS else nullcontext():
                reply = handler(await read_json(request))
        # orjson, not FastAPI's encoder: walking 5,000 names costs more than the filter itself.
        return Response(reply if isinstance(reply, bytes) else orjson.dumps(reply), media_type="application/json")

    router.add_route("/extender/{verb}", call, methods=["POST"])
    return router
