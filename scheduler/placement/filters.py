"""Filter stage: which nodes can take a pod, with the reason for every node that cannot.

A filter is a callable yielding ``(reason, mask)`` pairs, the mask marking over all nodes those
that fail for that reason. Filters run in order; a node rejected by one is not judged by the next,
as in kube-scheduler, whose messages these reasons follow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from scheduler.model.cluster import Pod, Requirement
from scheduler.model.resources import GPU, PODS
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Rejections

Mask = np.ndarray


class Filter(Protocol):
    name: str

    def __call__(self, snap: Snapshot, pod: Pod) -> Iterator[tuple[str, Mask]]: ...


@dataclass(frozen=True, slots=True)
class FilterResult:
    feasible: np.ndarray  # node indices, ascending
    rejections: Rejections


class TaintToleration:
    name = "taints"

    def __call__(self, snap: Snapshot, pod: Pod) -> Iterator[tuple[str, Mask]]:
        seen = np.zeros(len(snap), dtype=bool)
        for k, taint in enumerate(snap.taints):
            if not any(t.tolerates(taint) for t in pod.tolerations):
                fails = snap.taint_matrix[:, k] & ~seen  # report only a node's first untolerated taint
                seen |= fails
                yield f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}", fails


def requirement_mask(snap: Snapshot, req: Requirement) -> Mask:
    """Nodes that satisfy one node selector requirement."""
    if req.field:  # matchFields: Kubernetes supports metadata.name only
        names = np.zeros(len(snap), dtype=bool)
        names[[snap.index[v] for v in req.values if v in snap.index]] = True
        return names if req.operator == "In" else ~names
    labels = snap.labels(req.key)
    match req.operator:
        case "In" | "NotIn":
            hit = np.isin(labels.codes, [labels.lookup[v] for v in req.values if v in labels.lookup])
            return hit if req.operator == "In" else ~hit
        case "Exists":
            return labels.codes >= 0
        case "DoesNotExist":
            return labels.codes < 0
        case "Gt":
            return labels.numbers > int(req.values[0])  # NaN (absent, not a number) compares False
        case "Lt":
            return labels.numbers < int(req.values[0])
    raise ValueError(f"unknown operator {req.operator!r}")


class NodeAffinity:
    name = "node-affinity"

    def __call__(self, snap: Snapshot, pod: Pod) -> Iterator[tuple[str, Mask]]:
        ok = np.ones(len(snap), dtype=bool)
        for key, value in pod.node_selector.items():
            ok &= requirement_mask(snap, Requirement(key, "In", (value,)))
        if pod.affinity:
            any_term = np.zeros(len(snap), dtype=bool)
            for term in pod.affinity:
                if term:  # an empty term matches no node
                    all_reqs = np.ones(len(snap), dtype=bool)
                    for req in term:
                        all_reqs &= requirement_mask(snap, req)
                    any_term |= all_reqs
            ok &= any_term
        yield "node(s) didn't match Pod's node affinity/selector", ~ok


class GpuModel:
    name = "gpu-model"

    def __call__(self, snap: Snapshot, pod: Pod) -> Iterator[tuple[str, Mask]]:
        if pod.gpu is not None and pod.gpu.models is not None:
            wanted = "|".join(sorted(pod.gpu.models))
            yield f"GPU model not {wanted}", (snap.gpu_count > 0) & ~snap.gpu_model_nodes(pod.gpu.models)


class ResourcesFit:
    name = "resources"

    def __call__(self, snap: Snapshot, pod: Pod) -> Iterator[tuple[str, Mask]]:
        demand = snap.demand(pod)
        for col, amount in zip(demand.columns.tolist(), demand.amounts.tolist()):
            name = snap.columns[col]
            yield ("Too many pods" if name == PODS else f"Insufficient {name}"), snap.free[col] < amount
        for name in demand.unknown:
            yield f"Insufficient {name}", np.ones(len(snap), dtype=bool)


class GpuFit:
    """Device-level fit: k whole GPUs idle on one node, or one GPU with the share free."""

    name = "gpus"

    def __call__(self, snap: Snapshot, pod: Pod) -> Iterator[tuple[str, Mask]]:
        gpu = pod.gpu
        if gpu is None:
            return
        if gpu.shared:
            no_gpu = snap.gpu_count == 0
            yield f"Insufficient {GPU}", no_gpu
            yield f"no single GPU with {gpu.milli}m free", ~no_gpu & (snap.gpu_most_free < gpu.milli)
        else:
            yield f"Insufficient {GPU}", snap.gpu_whole_free < gpu.count


DEFAULT_FILTERS: tuple[Filter, ...] = (TaintToleration(), NodeAffinity(), GpuModel(), ResourcesFit(), GpuFit())


def run_filters(
    snap: Snapshot, pod: Pod, filters: Sequence[Filter] = DEFAULT_FILTERS, among: np.ndarray | None = None
) -> FilterResult:
    """The nodes (optionally only ``among`` these indices) that pass every filter."""
    if among is None:
        alive = np.ones(len(snap), dtype=bool)
    else:
        alive = np.zeros(len(snap), dtype=bool)
        alive[among] = True
    rejections = Rejections(int(alive.sum()), snap.names)
    for f in filters:
        failed = np.zeros(len(snap), dtype=bool)
        for reason, mask in f(snap, pod):
            hit = mask & alive
            if hit.any():
                rejections.add(reason, np.flatnonzero(hit))
                failed |= hit
        alive &= ~failed
        if not alive.any():
            break
    return FilterResult(np.flatnonzero(alive), rejections)

