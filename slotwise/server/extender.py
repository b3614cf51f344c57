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

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

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
from scheduler.placement.profile import Profile
from slotwise.server.cache import ClusterCache
from slotwise.server.live_profile import LiveProfile
from slotwise.server.metrics import ServiceMetrics

#: Set by the admission loop on gang members: the nodes of the gang's placement plan.
PLANNED_NODES_ANNOTATION = "slotwise.io/planned-nodes"
MAX_EXTENDER_PRIORITY = 10
MAX_BODY_BYTES = 4 * 2**20
#: Names the cache does not hold, answered one by one (a node kube-scheduler saw before the
#: watch brought it): past this the request is refused rather than a reply its size built.
MAX_UNKNOWN_NODES = 1000
_NAMES_KEY = b',"NodeNames":'
T = TypeVar("T")

#: Failures no eviction can cure go to FailedAndUnresolvableNodes; shortages to FailedNodes.
UNRESOLVABLE_FILTERS = (TaintToleration(), NodeAffinity(), GpuModel())
RESOLVABLE_FILTERS = (ResourcesFit(), GpuFit())


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refusing more than ``limit`` bytes before reading them all (413)."""
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
    return bytes(body)


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise HTTPException(400, f"body is not JSON: {exc}") from None


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The body as JSON (a 400 if it is not), at most ``limit`` bytes (413)."""
    return parse_json(await read_body(request, limit))


class _NotCut(Exception):
    """The body is not laid out as :func:`_cut` expects: it is read whole instead."""


def _cut(body: bytes) -> tuple[bytes, bytes]:
    """The body ``{...,"NodeNames":[...]}`` as the bytes of ``{...}`` and of ``[...]``.

    Go's encoder writes ExtenderArgs so, NodeNames last and no spaces; the parts are compared as
    bytes with what came before (the pod again in prioritize, the same node list every cycle),
    which costs far less than parsing 5,000 names again. A cut is only trusted once both parts have
    parsed: the first as an object, so the key was found at the top level, the second as a list.
    """
    at = body.rfind(_NAMES_KEY)
    if at < 0 or not body.endswith(b"]}"):
        raise _NotCut
    return body[:at] + b"}", body[at + len(_NAMES_KEY):-1]


def _parsed(part: bytes, kind: type) -> Any:
    try:
        value = orjson.loads(part)
    except (orjson.JSONDecodeError, RecursionError):
        raise _NotCut from None
    if not isinstance(value, kind):
        raise _NotCut
    return value


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
    if names is not None:
        return _strings(names)
    nodes = _field(args, "Nodes", dict, required=False) or {}
    items = nodes.get("items") or []
    if not isinstance(items, list):
        raise HTTPException(400, f"Nodes.items: expected a list, got {type(items).__name__}")
    return _strings([_node_name(n) for n in items], "Nodes.items[].metadata.name")


def _node_name(item: Any) -> Any:
    metadata = item.get("metadata") if isinstance(item, dict) else None
    return metadata.get("name") if isinstance(metadata, dict) else None


def _strings(names: list[Any], what: str = "NodeNames") -> list[str]:
    if set(map(type, names)) - {str}:  # map(type) runs in C: this is on every scheduling cycle
        raise HTTPException(400, f"{what}: expected a string for every node")
    return names


def _pod_of(head: bytes) -> Pod:
    """The Pod of a cut body's first part, which must be a JSON object with more than nothing in
    it (``{,"NodeNames":...}`` is no JSON, though ``{}`` and ``[...]`` each parse)."""
    args = _parsed(head, dict)
    if not args:
        raise _NotCut
    return _parse_pod(_field(args, "Pod", dict))


@dataclass(frozen=True)
class _Located:
    """A request's node names: the snapshot index of each known one, without repeats and in the
    order sent, and the names slotwise's cache does not hold."""

    position: np.ndarray
    unknown: list[str]


def _located(snap: Snapshot, names: list[str]) -> _Located:
    index = snap.index
    try:  # every name known: the lookup runs in C
        position = np.fromiter(map(index.__getitem__, names), dtype=np.int64, count=len(names))
        unknown: list[str] = []
    except KeyError:
        found = [index.get(n, -1) for n in names]
        position = np.array([i for i in found if i >= 0], dtype=np.int64)
        unknown = list(dict.fromkeys(n for n, i in zip(names, found) if i < 0))
        if len(unknown) > MAX_UNKNOWN_NODES:  # each would be answered by name: the reply would grow with the request
            raise HTTPException(400, f"the request names {len(unknown):,} nodes slotwise's cache does not hold "
                                     f"(at most {MAX_UNKNOWN_NODES:,} are answered)")
    if len(position) and np.bincount(position).max() > 1:
        position = np.array(list(dict.fromkeys(position.tolist())), dtype=np.int64)
    position.flags.writeable = False  # shared by later requests with the same names
    return _Located(position, unknown)


class _Recent(Generic[T]):
    """The last few inputs (bytes of a request) and what was derived from each, the most recently
    used first: the node list sent every cycle stays while each cycle's kept names come and go."""

    def __init__(self, size: int = 4):
        self._seen: deque[tuple[Any, T]] = deque(maxlen=size)

    def get(self, key: Any, derive: Callable[[], T]) -> T:
        value = self._take(key)
        if value is None:
            value = derive()
        self._seen.appendleft((key, value))
        return value

    def put(self, key: Any, value: T) -> None:
        self._take(key)
        self._seen.appendleft((key, value))

    def _take(self, key: Any) -> T | None:
        for i, (seen, value) in enumerate(self._seen):
            if seen == key:  # a few bytes compares: unequal lengths differ at once
                del self._seen[i]
                return value
        return None


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


class _Placers(NamedTuple):
    scorer: Placer
    unresolvable: Placer  # the filters eviction cannot fix
    resolvable: Placer  # the shortages eviction can


class Extender:
    def __init__(self, cache: ClusterCache, profile_name: str,
                 classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES, mig: FleetSource | None = None):
        self.cache = cache
        self.mig = mig
        self.profiles = LiveProfile(cache, profile_name, classes)
        self._built: tuple[Profile, _Placers] | None = None
        self._names_json: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=object))
        self._pods: _Recent[Pod] = _Recent()
        self._names: _Recent[_Located] = _Recent()

    def _placers(self, pod: Pod) -> _Placers:
        """The profile's placers over the cluster's current workload, rebuilt when it changes."""
        profile = self.profiles.current((pod,))
        if self._built is None or self._built[0] is not profile:
            scored: Profile = profile
            resolvable: tuple[Filter, ...] = RESOLVABLE_FILTERS
            if self.mig is not None:  # only then: pods without MIG pay nothing for it
                scored, resolvable = with_mig_score(self.mig, profile), (*resolvable, MigSlotFilter(self.mig))
            self._built = (profile, _Placers(Placer(scored), Placer(scored, UNRESOLVABLE_FILTERS),
                                             Placer(scored, resolvable)))
        return self._built[1]

    def _read(self, snap: Snapshot, body: bytes) -> tuple[Pod, _Located]:
        """A filter or prioritize body's pod and node names."""
        try:
            head, tail = _cut(body)
            pod = self._pods.get(head, lambda: _pod_of(head))
            located = self._names.get((snap.uid, tail), lambda: _located(snap, _strings(_parsed(tail, list))))
        except _NotCut:
            args = parse_json(body)
            pod, located = _parse_pod(_field(args, "Pod", dict)), _located(snap, _names(args))
        return pod, located

    def feasible(self, snap: Snapshot, pod: Pod, located: _Located,
                 resolvable: Placer | None = None) -> tuple[np.ndarray, _Failures, _Failures]:
        """Of the ``located`` names, the positions of those passing every filter, in the order
        sent; then shortages, then failures eviction cannot fix. ``resolvable`` replaces the
        shortage filters (a trial after evictions)."""
        failed = _Failures(dict.fromkeys(located.unknown, "node not in slotwise's cache yet"))
        hopeless = _Failures()
        candidate = located.position
        planned = _planned(pod)
        if planned is not None:
            inside = np.isin(candidate, [snap.index[n] for n in planned if n in snap.index])
            hopeless.named = dict.fromkeys((snap.names[i] for i in candidate[~inside].tolist()),
                                           "node not in the pod's gang placement plan")
            candidate = candidate[inside]
        rest = candidate
        placers = self._placers(pod)
        for placer, out in ((placers.unresolvable, hopeless), (resolvable or placers.resolvable, failed)):
            if len(rest):
                result = placer.filter(snap, pod, rest)
                out.rejected.append(result.rejections)
                rest = result.feasible
        passed = np.zeros(len(snap), dtype=bool)
        passed[rest] = True
        return candidate[passed[candidate]], failed, hopeless

    def filter(self, body: bytes) -> bytes:
        with self.cache.snapshot() as snap:
            pod, located = self._read(snap, body)
            where, failed, hopeless = self.feasible(snap, pod, located)
            encoded = self._encoded(snap)
            kept = b"[" + b",".join(encoded[where].tolist()) + b"]"
            where.flags.writeable = False
            self._names.put((snap.uid, kept), _Located(where, []))  # what prioritize is sent next
        return (b'{"Nodes":null,"NodeNames":' + kept + b',"FailedNodes":' + failed.json(encoded)
                + b',"FailedAndUnresolvableNodes":' + hopeless.json(encoded) + b',"Error":""}')

    def prioritize(self, body: bytes) -> bytes:
        """The profile's 0..100 score scaled to 0..10, as the encoded HostPriorityList; names
        slotwise does not know are left out (kube-scheduler counts them 0)."""
        with self.cache.snapshot() as snap:
            pod, located = self._read(snap, body)
            nodes = located.position
            total, _ = self._placers(pod).scorer.score(snap, pod, nodes) if len(nodes) else (np.zeros(0), [])
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
        pod = _parse_pod(_field(args, "Pod", dict))
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
            resolvable = (self._after_evicting(pod, node, [a.pod for a in evicted])
                          if self.mig is not None and requested_profile(pod)[0] else None)
            kept, *_ = self.feasible(trial, pod, _Located(np.array([trial.index[node]]), []), resolvable)
            for a in evicted:
                trial.assign(a.pod, a.node, a.gpus)
            if len(kept):
                agreed[node] = victims
        return {"NodeNameToMetaVictims": agreed}

    def _after_evicting(self, pod: Pod, node: str, victims: list[Pod]) -> Placer:
        """The shortage filters on a trial fleet where the MIG instances ``victims`` hold on
        ``node`` are idle (layouts are fixed: an evicted 2g frees a 2g, nothing else)."""
        assert self.mig is not None
        fleet = self.mig().copy()
        for victim in victims:
            held, _ = requested_profile(victim)
            if held is not None:
                fleet.vacate(node, held)
        return Placer(self._placers(pod).resolvable.profile, (*RESOLVABLE_FILTERS, MigSlotFilter(fleet)))

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


class _Endpoint:
    """The verbs as a bare ASGI app (Starlette calls an endpoint that is not a function so):
    Starlette's request and response wrapping and FastAPI's cost more than they give for a body
    read by hand anyway, on the one endpoint called twice per scheduling cycle."""

    def __init__(self, extender: Extender, metrics: ServiceMetrics | None):
        self.extender = extender
        self.metrics = metrics
        self.timed: dict[str, Callable[[bytes], bytes]] = {"filter": extender.filter, "prioritize": extender.prioritize}
        self._preempting = asyncio.Semaphore(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        verb = request.path_params["verb"]
        reply: bytes | dict[str, Any]
        if verb in self.timed:  # timed from the body's first byte: reading 5,000 names is slotwise's time too
            with self.metrics.timed(verb) if self.metrics is not None else nullcontext():
                reply = self.timed[verb](await read_body(request))
        elif verb == "preempt":
            # Rare, and it copies the snapshot and filters each candidate node: off the event
            # loop that filter and the webhooks share, and one at a time, so that several
            # callers queue instead of multiplying the work.
            args = await read_json(request)
            async with self._preempting:
                reply = await run_in_threadpool(self.extender.preempt, args)
        elif verb == "bind":  # the only verb that waits on the API server: off the event loop
            reply = await run_in_threadpool(self.extender.bind, await read_json(request))
        else:
            raise HTTPException(404, f"unknown extender verb {verb!r}; expected filter, prioritize, preempt or bind")
        # orjson, not FastAPI's encoder: walking 5,000 names costs more than the filter itself.
        body = reply if isinstance(reply, bytes) else orjson.dumps(reply)
        await Response(body, media_type="application/json")(scope, receive, send)


def extender_router(cache: ClusterCache, profile_name: str = "default",
                    classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES,
                    metrics: ServiceMetrics | None = None, mig: FleetSource | None = None) -> APIRouter:
    """The four verbs under ``/extender``; ``urlPrefix`` in KubeSchedulerConfiguration points here.
    ``metrics`` times filter and prioritize; ``mig`` gives the fleet MIG pods are placed on."""
    router = APIRouter()
    router.add_route("/extender/{verb}", _Endpoint(Extender(cache, profile_name, classes, mig), metrics), methods=["POST"])
    return router
