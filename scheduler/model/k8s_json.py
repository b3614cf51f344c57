"""Build nodes and pods from Kubernetes API JSON (v1.Node, v1.Pod) as plain dicts.

No client library here: the same dicts come from the API server, from admission reviews,
from extender calls and from ``kubectl get -o json`` files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from scheduler.model.cluster import (
    DATASET_LABEL,
    DEPLOYMENT_LABEL,
    GPU_INDICES_ANNOTATION,
    GPU_MEMORY_LABEL,
    GPU_MODELS_ANNOTATION,
    GPU_PRODUCT_LABEL,
    KIND_LABEL,
    PIPELINE_LABEL,
    PROJECT_LABEL,
    UNSCHEDULABLE_TAINT,
    GpuDemand,
    Node,
    Pod,
    Requirement,
    SelectorTerm,
    Taint,
    TaintEffect,
    Toleration,
    WorkloadKind,
)
from scheduler.model.resources import GPU, GPU_MILLI, MILLI_PER_GPU, ResourceError, Resources, pod_requests

#: Labels that tie the pods of one pipeline run together, in order of preference.
PIPELINE_LABELS = (PIPELINE_LABEL, "workflows.argoproj.io/workflow")
_SERVING_OWNERS = {"ReplicaSet", "Deployment"}
#: Owners whose pods are replicas of one another.
_REPLICA_OWNERS = {"ReplicaSet", "StatefulSet"}
_OPERATORS = {"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"}
#: More of any resource than a cluster holds (4 Ei bytes of memory; GPUs counted in milli-GPU).
#: Quantities saturate at 2**63-1, so without a bound a pod's containers could add up past what
#: 64-bit counters (the engine's, the quota ledger's) hold; this leaves room to add a few up.
MAX_AMOUNT = 2**62
#: Pod priorities are int32 (``PriorityClass.value``).
_PRIORITY = range(-(2**31), 2**31)


class ModelError(ValueError):
    """A Kubernetes object slotwise cannot use; the message names the offending field."""


def _mapping(obj: Any, path: str) -> Mapping[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path}: expected an object, got {type(obj).__name__}")
    return obj


def _list(obj: Any, path: str) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise ModelError(f"{path}: expected a list, got {type(obj).__name__}")
    return obj


def _strings(obj: Any, path: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(obj, path).items()}


def _effect(value: Any, path: str) -> TaintEffect:
    try:
        return TaintEffect(value)
    except ValueError:
        raise ModelError(f"{path}: unknown taint effect {value!r}") from None


def _terms(node_affinity: Mapping[str, Any], path: str) -> tuple[SelectorTerm, ...]:
    required = _mapping(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), path)
    terms = []
    for i, term in enumerate(_list(required.get("nodeSelectorTerms"), f"{path}.nodeSelectorTerms")):
        term = _mapping(term, f"{path}.nodeSelectorTerms[{i}]")
        reqs: list[Requirement] = []
        for part, is_field in (("matchExpressions", False), ("matchFields", True)):
            for j, expr in enumerate(_list(term.get(part), f"{path}.nodeSelectorTerms[{i}].{part}")):
                where = f"{path}.nodeSelectorTerms[{i}].{part}[{j}]"
                expr = _mapping(expr, where)
                op = expr.get("operator")
                if not isinstance(op, str) or op not in _OPERATORS:
                    raise ModelError(f"{where}.operator: unknown operator {op!r}")
                values = tuple(str(v) for v in _list(expr.get("values"), f"{where}.values"))
                if op in ("Gt", "Lt") and (len(values) != 1 or not re.fullmatch(r"[+-]?[0-9]+", values[0])):
                    raise ModelError(f"{where}.values: {op} needs exactly one integer value")
                reqs.append(Requirement(str(expr.get("key", "")), op, values, is_field))
        terms.append(tuple(reqs))
    return tuple(terms)


def _requests(spec: Mapping[str, Any]) -> Resources:
    """The pod's effective requests; the fields :func:`pod_requests` reads are checked to be
    objects and lists first, so that a wrong type is a :class:`ModelError` naming it."""
    for key in ("containers", "initContainers"):
        for i, container in enumerate(_list(spec.get(key), f"spec.{key}")):
            where = f"spec.{key}[{i}]"
            if not isinstance(container, Mapping):
                raise ModelError(f"{where}: expected an object, got {type(container).__name__}")
            resources = _mapping(container.get("resources"), f"{where}.resources")
            for part in ("requests", "limits"):
                _mapping(resources.get(part), f"{where}.resources.{part}")
    _mapping(spec.get("overhead"), "spec.overhead")
    try:
        requests = pod_requests(spec)
    except ResourceError as exc:
        raise ModelError(f"spec.containers: {exc}") from None
    for name, amount in requests.items():
        if amount * (MILLI_PER_GPU if name == GPU else 1) > MAX_AMOUNT:
            raise ModelError(f"spec.containers: {name}: the pod asks more than any cluster holds")
    return requests


def _gpu_demand(requests: Resources, annotations: Mapping[str, str]) -> GpuDemand | None:
    count, milli = requests[GPU], requests[GPU_MILLI]
    models_text = annotations.get(GPU_MODELS_ANNOTATION, "")
    models = frozenset(m.strip() for m in models_text.replace(",", "|").split("|") if m.strip()) or None
    if count and milli:
        raise ModelError(f"requests: ask for either {GPU} (whole GPUs) or {GPU_MILLI} (a share of one GPU), not both")
    if milli > MILLI_PER_GPU:
        raise ModelError(f"requests.{GPU_MILLI}: a share is at most {MILLI_PER_GPU} (one GPU); ask {GPU} for more")
    if count:
        return GpuDemand(count, MILLI_PER_GPU, models)
    if milli:
        return GpuDemand(1, milli, models)
    return None


def _owner_kind(owner: Any) -> str | None:
    """An owner reference's kind; None for anything else (a list or object is no kind, and
    cannot be looked up in a set)."""
    kind = owner.get("kind") if isinstance(owner, Mapping) else None
    return kind if isinstance(kind, str) else None


def _workload_kind(labels: Mapping[str, str], owners: list[Any]) -> WorkloadKind:
    if KIND_LABEL in labels:
        try:
            return WorkloadKind(labels[KIND_LABEL])
        except ValueError:
            raise ModelError(
                f"metadata.labels.{KIND_LABEL}: {labels[KIND_LABEL]!r} is not one of job, notebook, serving"
            ) from None
    if "notebook-name" in labels:  # Kubeflow notebook controller
        return WorkloadKind.NOTEBOOK
    if "serving.kserve.io/inferenceservice" in labels:
        return WorkloadKind.SERVING
    if any(_owner_kind(o) in _SERVING_OWNERS for o in owners):
        return WorkloadKind.SERVING
    return WorkloadKind.JOB


def _host_ties(spec: Mapping[str, Any], owners: list[Any]) -> tuple[str, ...]:
    """What only the cluster's own machines can give the pod (virtual nodes such as ECI cannot)."""
    ties = [f"hostPath volume {v.get('name', '')}" for v in spec.get("volumes") or []
            if isinstance(v, Mapping) and v.get("hostPath") is not None]
    if spec.get("hostNetwork"):
        ties.append("hostNetwork")
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if isinstance(c, Mapping) and isinstance(c.get("securityContext"), Mapping) and c["securityContext"].get("privileged"):
            ties.append(f"privileged container {c.get('name', '')}")
    if any(_owner_kind(o) == "DaemonSet" for o in owners):
        ties.append("owned by a DaemonSet")
    return tuple(ties)


def pod_from_k8s(obj: Mapping[str, Any]) -> Pod:
    """A :class:`Pod` from a v1.Pod object; raises :class:`ModelError` naming the bad field."""
    obj = _mapping(obj, "pod")
    meta = _mapping(obj.get("metadata"), "metadata")
    spec = _mapping(obj.get("spec"), "spec")
    name = meta.get("name") or meta.get("generateName") or ""
    if not name:
        raise ModelError("metadata.name: a pod needs a name or generateName")
    namespace = str(meta.get("namespace") or "default")
    labels = _strings(meta.get("labels"), "metadata.labels")
    annotations = _strings(meta.get("annotations"), "metadata.annotations")
    requests = _requests(spec)
    affinity = _mapping(_mapping(spec.get("affinity"), "spec.affinity").get("nodeAffinity"), "spec.affinity.nodeAffinity")
    tolerations = []
    for i, t in enumerate(_list(spec.get("tolerations"), "spec.tolerations")):
        t = _mapping(t, f"spec.tolerations[{i}]")
        effect = _effect(t["effect"], f"spec.tolerations[{i}].effect") if t.get("effect") else None
        tolerations.append(Toleration(str(t.get("key", "")), str(t.get("operator") or "Equal"), str(t.get("value", "")), effect))
    claims = []
    for i, v in enumerate(_list(spec.get("volumes"), "spec.volumes")):
        if isinstance(v, Mapping) and isinstance(v.get("persistentVolumeClaim"), Mapping):
            claim = v["persistentVolumeClaim"].get("claimName")
            if not isinstance(claim, str) or not claim:
                raise ModelError(f"spec.volumes[{i}].persistentVolumeClaim.claimName: expected a claim's name")
            claims.append(claim)
    datasets = tuple(dict.fromkeys(([labels[DATASET_LABEL]] if DATASET_LABEL in labels else []) + claims))
    owners = _list(meta.get("ownerReferences"), "metadata.ownerReferences")
    indices_text = annotations.get(GPU_INDICES_ANNOTATION, "")
    try:
        gpu_indices = tuple(int(i) for i in indices_text.split(",") if i.strip())
    except ValueError:
        raise ModelError(f"metadata.annotations.{GPU_INDICES_ANNOTATION}: expected comma-separated GPU indices") from None
    priority = spec.get("priority") or 0
    if not isinstance(priority, int) or isinstance(priority, bool) or priority not in _PRIORITY:
        raise ModelError("spec.priority: expected a 32-bit integer")
    return Pod(
        name=str(name),
        namespace=namespace,
        requests=requests,
        gpu=_gpu_demand(requests, annotations),
        uid=str(meta.get("uid") or ""),
        labels=labels,
        annotations=annotations,
        project=labels.get(PROJECT_LABEL, namespace),
        kind=_workload_kind(labels, owners),
        priority=priority,
        node_selector=_strings(spec.get("nodeSelector"), "spec.nodeSelector"),
        affinity=_terms(affinity, "spec.affinity.nodeAffinity"),
        tolerations=tuple(tolerations),
        pipeline=next((labels[k] for k in PIPELINE_LABELS if k in labels), None),
        datasets=datasets,
        node_name=spec.get("nodeName") or None,
        gpu_indices=gpu_indices,
        deployment=labels.get(DEPLOYMENT_LABEL) or next(
            (str(o.get("name")) for o in owners if _owner_kind(o) in _REPLICA_OWNERS), None),
        claims=tuple(dict.fromkeys(claims)),
        host_ties=_host_ties(spec, owners),
    )


def node_from_k8s(obj: Mapping[str, Any]) -> Node:
    """A :class:`Node` from a v1.Node object; raises :class:`ModelError` naming the bad field."""
    obj = _mapping(obj, "node")
    meta = _mapping(obj.get("metadata"), "metadata")
    spec = _mapping(obj.get("spec"), "spec")
    status = _mapping(obj.get("status"), "status")
    name = meta.get("name")
    if not name:
        raise ModelError("metadata.name: a node needs a name")
    labels = _strings(meta.get("labels"), "metadata.labels")
    try:
        allocatable = Resources.parse(_mapping(status.get("allocatable") or status.get("capacity"), "status.allocatable"))
    except ResourceError as exc:
        raise ModelError(f"status.allocatable: {exc}") from None
    taints = []
    for i, t in enumerate(_list(spec.get("taints"), "spec.taints")):
        t = _mapping(t, f"spec.taints[{i}]")
        taints.append(Taint(str(t.get("key", "")), str(t.get("value", "")), _effect(t.get("effect"), f"spec.taints[{i}].effect")))
    # The node lifecycle controller taints cordoned nodes; do the same for objects that predate it.
    if spec.get("unschedulable") and not any(t.key == UNSCHEDULABLE_TAINT for t in taints):
        taints.append(Taint(UNSCHEDULABLE_TAINT, "", TaintEffect.NO_SCHEDULE))
    memory = labels.get(GPU_MEMORY_LABEL, "0")
    return Node(
        name=str(name),
        allocatable=allocatable,
        labels=labels,
        taints=tuple(taints),
        gpu_model=labels.get(GPU_PRODUCT_LABEL) if allocatable[GPU] else None,
        gpu_memory_mib=int(memory) if memory.isdigit() else 0,
    )


#: Pods in these phases have finished: they hold nothing on their node any more.
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


def finished(obj: Mapping[str, Any]) -> bool:
    """Whether a pod object has finished (its ``status.phase``): readers of a cluster skip it."""
    status = obj.get("status")
    return isinstance(status, Mapping) and status.get("phase") in FINISHED_PHASES


def items(document: Any) -> Iterable[Mapping[str, Any]]:
    """The objects of a ``kubectl get -o json`` document: a List, a bare list or one object."""
    if isinstance(document, Mapping) and "items" in document:
        return _list(document["items"], "items")
    if isinstance(document, list):
        return document
    return [_mapping(document, "document")]
