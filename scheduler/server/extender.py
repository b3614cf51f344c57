"""kube-scheduler's HTTP extender (extender v1, ``nodeCacheCapable: true``): filter, prioritize,
bind and preempt, reading slotwise's cluster cache only.

Keys are PascalCase as the v1 Go types (no JSON tags) marshal them. Every verb answers 200 with
the v1 reply, or a 4xx with ``{"detail": ...}`` for a request it cannot read: kube-scheduler counts
any non-200 as an extender error, and a 500 would hide whose fault it was.

Preempt is deliberately conservative: for each node kube-scheduler proposes, slotwise keeps the
proposed victims unchanged when evicting them (on a copy of the snapshot) lets the pod pass
slotwise's filters there, and drops the node otherwise. It never adds victims or nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from scheduler.model.cluster import Pod, WorkloadKind
from scheduler.model.k8s_json import ModelError, pod_from_k8s
from scheduler.model.snapshot import Snapshot
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from scheduler.placement.engine import Placer
from scheduler.placement.filters import GpuFit, GpuModel, NodeAffinity, ResourcesFit, TaintToleration
from scheduler.placement.profile import build_profile
from scheduler.server.cache import ClusterCache
from scheduler.server.metrics import VERBS, ServiceMetrics

#: Set by the admission loop on gang members: the nodes of the gang's placement plan.
PLANNED_NODES_ANNOTATION = "slotwise.io/planned-nodes"
MAX_EXTENDER_PRIORITY = 10
MAX_BODY_BYTES = 4 * 2**20

#: Failures no eviction can cure go to FailedAndUnresolvableNodes; shortages to FailedNodes.
UNRESOLVABLE_FILTERS = (TaintToleration(), NodeAffinity(), GpuModel())
RESOLVABLE_FILTERS = (ResourcesFit(), GpuFit())


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes before reading them all (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
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


def _pod(args: Any) -> Pod:
    try:
        return pod_from_k8s(_field(args, "Pod", dict))
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


def _planned(pod: Pod) -> set[str] | None:
    text = pod.annotations.get(PLANNED_NODES_ANNOTATION)
    return None if text is None else {n.strip() for n in text.split(",") if n.strip()}


class Extender:
    def __init__(self, cache: ClusterCache, profile_name: str,
                 classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES):
        self.cache = cache
        profile = build_profile(profile_name, classes=classes)
        self.scorer = Placer(profile)
        self.unresolvable = Placer(profile, UNRESOLVABLE_FILTERS)
        self.resolvable = Placer(profile, RESOLVABLE_FILTERS)

    def feasible(self, snap: Snapshot, pod: Pod, names: list[str]) -> tuple[list[str], dict[str, str], dict[str, str]]:
        """Names passing every filter (in input order), then shortages, then failures eviction cannot fix."""
        names = list(dict.fromkeys(names))
        index = snap.index
        position = np.array([index.get(n, -1) for n in names], dtype=np.int64)
        failed = {names[k]: "node not in slotwise's cache yet" for k in np.flatnonzero(position < 0).tolist()}
        hopeless: dict[str, str] = {}
        candidate = position >= 0
        planned = _planned(pod)
        if planned is not None:
            outside = candidate & ~np.array([n in planned for n in names], dtype=bool)
            hopeless = {names[k]: "node not in the pod's gang placement plan" for k in np.flatnonzero(outside).tolist()}
            candidate &= ~outside
        rest = position[candidate]
        for placer, out in ((self.unresolvable, hopeless), (self.resolvable, failed)):
            if len(rest):
                result = placer.filter(snap, pod, rest)
                out.update(result.rejections.by_node())
                rest = result.feasible
        passed = np.zeros(len(snap), dtype=bool)
        passed[rest] = True
        keep = candidate & passed[np.where(candidate, position, 0)]
        return [names[k] for k in np.flatnonzero(keep).tolist()], failed, hopeless

    def filter(self, args: Any) -> dict[str, Any]:
        pod, names = _pod(args), _names(args)
        with self.cache.snapshot() as snap:
            kept, failed, hopeless = self.feasible(snap, pod, names)
        return {"Nodes": None, "NodeNames": kept, "FailedNodes": failed,
                "FailedAndUnresolvableNodes": hopeless, "Error": ""}

    def prioritize(self, args: Any) -> list[dict[str, Any]]:
        """The profile's 0..100 score scaled to 0..10; names slotwise does not know are left out (0)."""
        pod, names = _pod(args), _names(args)
        with self.cache.snapshot() as snap:
            known = [n for n in dict.fromkeys(names) if n in snap.index]
            nodes = np.array([snap.index[n] for n in known], dtype=np.int64)
            total, _ = self.scorer.score(snap, pod, nodes) if len(nodes) else (np.zeros(0), [])
        scores = np.clip(np.rint(total * MAX_EXTENDER_PRIORITY / 100), 0, MAX_EXTENDER_PRIORITY).astype(int)
        return [{"Host": n, "Score": int(s)} for n, s in zip(known, scores.tolist())]

    def preempt(self, args: Any) -> dict[str, Any]:
        pod = _pod(args)
        proposed = _field(args, "NodeNameToMetaVictims", dict, required=False) or {}
        agreed: dict[str, Any] = {}
        with self.cache.snapshot() as live:
            for node, victims in proposed.items():
                uids = self._victim_uids(node, victims)
                if node not in live.index:
                    continue
                trial = live.copy()
                for uid in uids:
                    key = self.cache.pod_key(uid)
                    if key is not None and key in trial.assignments:
                        trial.release(key)
                kept, _, _ = self.feasible(trial, pod, [node])
                if kept:
                    agreed[node] = victims
        return {"NodeNameToMetaVictims": agreed}

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
                    metrics: ServiceMetrics | None = None) -> APIRouter:
    """The four verbs under ``/extender``; ``urlPrefix`` in KubeSchedulerConfiguration points here.
    ``metrics`` times filter and prioritize."""
    extender = Extender(cache, profile_name, classes)
    router = APIRouter(prefix="/extender", tags=["extender"])
    verbs = {"filter": extender.filter, "prioritize": extender.prioritize,
             "preempt": extender.preempt, "bind": extender.bind}

    @router.post("/{verb}")
    async def call(verb: str, request: Request) -> Response:
        handler = verbs.get(verb)
        if handler is None:
            raise HTTPException(404, f"unknown extender verb {verb!r}; expected one of {', '.join(verbs)}")
        args = await read_json(request)
        # bind is the only verb that waits on the API server: keep it off the event loop.
        if verb == "bind":
            reply = await run_in_threadpool(handler, args)
        else:
            with metrics.timed(verb) if metrics is not None and verb in VERBS else nullcontext():
                reply = handler(args)
        # orjson, not FastAPI's encoder: walking 5,000 names costs more than the filter itself.
        return Response(orjson.dumps(reply), media_type="application/json")

    return router
