"""Admission webhooks (admission.k8s.io/v1) for pods: the mutating one labels and gates pods in
managed namespaces, the validating one rejects pods that can never run, with a clear message.

The mutation only adds what is absent, so with ``reinvocationPolicy: IfNeeded`` a second call
patches nothing. A pod the model cannot read is let through unmutated: the validating webhook
is the one that explains the problem to the user.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from contextlib import nullcontext
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool

from quota.admission import Deny, decide, request_for
from quota.config import QuotaConfig
from quota.ledger import Ledger
from quota.store import Store
from scheduler.gang.groups import annotation_problem
from scheduler.model.cluster import KIND_LABEL, PROJECT_LABEL, Pod
from scheduler.model.json_patch import set_entries
from scheduler.model.k8s_json import ModelError, pod_from_k8s
from slotwise.server.extender import read_json
from slotwise.server.gpu_shares import env_mutation
from slotwise.server.metrics import ServiceMetrics

log = logging.getLogger(__name__)

ADMISSION_GATE = "slotwise.io/admission"
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
API_VERSION = "admission.k8s.io/v1"

#: Which namespaces slotwise manages: a set of names, or a predicate (e.g. over namespace labels).
Managed = Collection[str] | Callable[[str], bool]


def _review(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping) or body.get("apiVersion") != API_VERSION or body.get("kind") != "AdmissionReview":
        raise HTTPException(400, f"expected an AdmissionReview of apiVersion {API_VERSION}")
    request = body.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise HTTPException(400, "request.uid: an AdmissionReview needs a request with a uid")
    return request


def _reply(uid: str, allowed: bool = True, message: str = "", code: int = 200,
           patch: list[dict[str, Any]] | None = None, warnings: list[str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed or message:
        response["status"] = {"code": code, "message": message}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _pod_create(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind")
    return (request.get("operation") == "CREATE" and isinstance(kind, Mapping) and kind.get("kind") == "Pod"
            and isinstance(request.get("object"), Mapping))


def _pod(obj: Mapping[str, Any], namespace: str) -> Pod:
    """The model's pod; the request's namespace is the truth (a created object may omit it)."""
    meta = obj.get("metadata")
    return pod_from_k8s({**obj, "metadata": {**meta, "namespace": namespace}} if isinstance(meta, Mapping) else obj)


def mutation(obj: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The JSON Patch that adds the project and kind labels and the admission gate, where absent.
    Not gated: a pod created with its node already set (a static pod's mirror; the API server
    refuses a gate beside ``spec.nodeName``), and a DaemonSet's pod (one per node, an agent no
    project quota governs: gated, it could wait forever and leave its node without it)."""
    pod = _pod(obj, namespace)  # a name, and metadata and spec that are objects (or absent)
    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    labels = meta.get("labels") or {}
    wanted = {PROJECT_LABEL: namespace, KIND_LABEL: str(pod.kind)}
    patch = set_entries(obj, ("metadata", "labels"), {k: v for k, v in wanted.items() if k not in labels})
    gates = spec.get("schedulingGates") if isinstance(spec, Mapping) else None
    if gates and not isinstance(gates, list):
        raise ModelError(f"spec.schedulingGates: expected a list, got {type(gates).__name__}")
    owners = meta.get("ownerReferences")
    daemon = isinstance(owners, list) and any(isinstance(o, Mapping) and o.get("kind") == "DaemonSet" for o in owners)
    if daemon or isinstance(spec, Mapping) and spec.get("nodeName"):
        return patch
    if not isinstance(spec, Mapping):  # a patch cannot add into a spec that is not there
        patch.append({"op": "add", "path": "/spec", "value": {"schedulingGates": [{"name": ADMISSION_GATE}]}})
    elif not gates:
        patch.append({"op": "add", "path": "/spec/schedulingGates", "value": [{"name": ADMISSION_GATE}]})
    elif not any(isinstance(g, Mapping) and g.get("name") == ADMISSION_GATE for g in gates):
        patch.append({"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": ADMISSION_GATE}})
    return patch


class QuotaCheck:
    """Whether a pod's request can ever be admitted in its project (above a max: never).

    The configuration is read again once it is ``max_age_s`` old, not for every pod: every pod
    creation waits for this check, and need not wait for a database round trip too. A pool
    raised lets its pods in that much later; the admission loop, which decides, reads the newest."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time, max_age_s: float = 1.0):
        self.store = store
        self.clock = clock
        self.max_age_s = max_age_s
        self._ledger: tuple[float, QuotaConfig, Ledger] | None = None  # read at, config, its empty ledger

    def fresh(self, now: float | None = None) -> bool:
        """Whether :meth:`never` can answer from what it read (no database round trip)."""
        now = self.clock() if now is None else now
        return self._ledger is not None and 0 <= now - self._ledger[0] < self.max_age_s

    def never(self, pod: Pod) -> str | None:
        now = self.clock()
        if not self.fresh(now):
            config = self.store.config()  # the store caches it per version: the same object if unchanged
            ledger = self._ledger[2] if self._ledger is not None and self._ledger[1] is config else Ledger(config)
            self._ledger = (now, config, ledger)
        decision = decide(self._ledger[2], request_for(pod.key, [pod]), now)
        return decision.reason if isinstance(decision, Deny) else None


def problems(obj: Mapping[str, Any], namespace: str, quota: QuotaCheck | None) -> str | None:
    """Why the pod can never run, or None."""
    try:
        pod = _pod(obj, namespace)
    except ModelError as exc:  # covers a GPU share above 1000m as well
        return f"pod cannot be scheduled: {exc}"
    return annotation_problem(pod) or (quota.never(pod) if quota is not None else None)


def webhook_router(managed: Managed, store: Store | None = None, clock: Callable[[], float] = time.time,
                   metrics: ServiceMetrics | None = None) -> APIRouter:
    """``POST /webhooks/mutate`` and ``/webhooks/validate``; ``store`` enables the quota check,
    ``metrics`` times both."""
    timed = metrics.timed if metrics is not None else (lambda _verb: nullcontext())
    is_managed = managed if callable(managed) else frozenset(managed).__contains__
    quota = QuotaCheck(store, clock) if store is not None else None
    router = APIRouter(prefix="/webhooks", tags=["webhooks"])

    def applies(request: Mapping[str, Any]) -> bool:
        namespace = request.get("namespace")
        return (_pod_create(request) and isinstance(namespace, str)
                and namespace not in SYSTEM_NAMESPACES and bool(is_managed(namespace)))

    @router.post("/mutate")
    async def mutate(request: Request) -> dict[str, Any]:
        review = _review(await read_json(request))
        if not applies(review):
            return _reply(review["uid"])
        with timed("mutate"):
            try:
                patch = mutation(review["object"], review["namespace"]) + env_mutation(review["object"], review["uid"])
            except ModelError as exc:
                return _reply(review["uid"], warnings=[f"slotwise did not label or gate this pod: {exc}"])
        return _reply(review["uid"], patch=patch)

    @router.post("/validate")
    async def validate(request: Request) -> dict[str, Any]:
        review = _review(await read_json(request))
        if not applies(review):
            return _reply(review["uid"])
        with timed("validate"):
            try:
                args = review["object"], review["namespace"], quota
                # The database is read once a second, in a worker thread; between reads the check
                # is a few dict lookups, cheaper than the hop to a thread.
                reason = problems(*args) if quota is None or quota.fresh() else await run_in_threadpool(problems, *args)
            except (OperationalError, InterfaceError):  # the database is away: a check that cannot be
                # made must not refuse the pod; the gate still holds it
                log.warning("quota check skipped: the database is unavailable", exc_info=True)
                return _reply(review["uid"], warnings=["slotwise could not check this pod's quota (its database is "
                                                       "unavailable); the admission loop decides it once it can"])
        return _reply(review["uid"]) if reason is None else _reply(review["uid"], False, reason, 422)

    return router
