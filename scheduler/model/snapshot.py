"""The cluster snapshot: node state in arrays, so one pod is checked against thousands of nodes
with a handful of vectorised operations.

Static facts (labels, taints, GPU model) are indexed once; dynamic state (free scalar resources,
free share of every GPU) changes only through :meth:`Snapshot.assign` and
:meth:`Snapshot.release`, which keep the derived arrays exact and give the node a new ``version``.
Versions are drawn from one counter for every snapshot and copy, so a node's version names one
state of it among all copies of its snapshot: policies may cache per-node values across copies.
A node whose labels, taints or GPU model change is replaced in place (:meth:`Snapshot.replace_node`):
its pods stay accounted, and the node takes a new version.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from scheduler.model.cluster import GpuDemand, Node, Pod, Taint, TaintEffect
from scheduler.model.gpu_models import accepts_model
from scheduler.model.resources import CPU, MEMORY, MILLI_PER_GPU, PODS, is_gpu

_snapshot_ids = itertools.count(1)
_versions = itertools.count(1)
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_FILTERING_EFFECTS = (TaintEffect.NO_SCHEDULE, TaintEffect.NO_EXECUTE)

#: Categories of pods counted per node (see :meth:`Snapshot.tally`).
PIPELINE = "pipeline"
REPLICAS = "replicas"
GPU_AFFINITY = "gpu-affinity"


class OvercommitError(ValueError):
    """An assignment that would take more than a node or GPU has free."""


@dataclass(frozen=True, slots=True)
class Assignment:
    pod: Pod
    node: int
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Demand:
    """A pod's scalar request laid onto the snapshot's columns."""

    columns: np.ndarray  # column indices
    amounts: np.ndarray  # amounts, aligned with columns
    unknown: tuple[str, ...]  # requested resources no node offers


@dataclass(frozen=True, slots=True)
class LabelIndex:
    """One label key across all nodes: a value code per node (-1 where absent)."""

    codes: np.ndarray
    lookup: Mapping[str, int]
    numbers: np.ndarray  # the value as a number, NaN where absent or not an integer


def _tally_keys(pod: Pod) -> list[tuple[str, object]]:
    keys: list[tuple[str, object]] = []
    if pod.pipeline:
        keys.append((PIPELINE, pod.pipeline))
    if pod.deployment:
        keys.append((REPLICAS, (pod.namespace, pod.deployment)))
    if pod.gpu is not None:
        keys.append((GPU_AFFINITY, gpu_affinity(pod.gpu)))
    return keys


def gpu_affinity(gpu: GpuDemand) -> int:
    """The class of a GPU pod that gpu-clustering gathers by, as the FGD paper's simulator does:
    every share is one class (0), whole-GPU pods one class per GPU count."""
    return 0 if gpu.shared else gpu.count


class Snapshot:
    def __init__(self, nodes: Sequence[Node], pods: Iterable[Pod] = ()):
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.names: tuple[str, ...] = tuple(node.name for node in self.nodes)
        self.index: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.name in self.index:
                raise ValueError(f"duplicate node name {node.name!r}")
            self.index[node.name] = i
        n = len(self.nodes)
        # Names the snapshot and its copies, and the GPU model codes they share (policies cache by it).
        self.uid = next(_snapshot_ids)

        # Scalar resources: one row per resource, one column per node (rows are contiguous).
        offered = {name for node in self.nodes for name in node.allocatable if not is_gpu(name)}
        self.columns: tuple[str, ...] = (CPU, MEMORY, *sorted(offered - {CPU, MEMORY}))
        self.column: dict[str, int] = {name: j for j, name in enumerate(self.columns)}
        self.allocatable = np.zeros((len(self.columns), n), dtype=np.int64)
        for i, node in enumerate(self.nodes):
            for name, amount in node.allocatable.items():
                if name in self.column:
                    self.allocatable[self.column[name], i] = amount
        self.free = self.allocatable.copy()

        # GPUs: one row per node, padded with -1 past the node's GPU count.
        self.gpu_count = np.array([node.gpu_count for node in self.nodes], dtype=np.int64)
        width = max(1, int(self.gpu_count.max(initial=0)))
        self.gpu_free = np.full((n, width), -1, dtype=np.int64)
        self.gpu_free[np.arange(width) < self.gpu_count[:, None]] = MILLI_PER_GPU
        self.gpu_whole_free = self.gpu_count.copy()  # GPUs with nothing on them
        self.gpu_most_free = self.gpu_free.max(axis=1)  # the largest share free on one GPU
        self.gpu_idle = self.gpu_count * MILLI_PER_GPU  # free milli-GPU summed over the node
        self.gpu_capacity_max = int(self.gpu_count.max(initial=0)) * MILLI_PER_GPU
        self.gpu_models, self.gpu_model = self._index_models()

        self.version = np.zeros(n, dtype=np.int64)
        self._assignments: dict[str, Assignment] = {}
        self._tallies: dict[tuple[str, object], dict[int, int]] = defaultdict(dict)
        self._distinct: dict[str, np.ndarray] = {}
        self._labels: dict[str, LabelIndex] = {}
        self._model_nodes: dict[frozenset[str], np.ndarray] = {}
        self.taints, self.taint_matrix = self._index_taints()

        for pod in pods:
            if pod.node_name is not None:
                if pod.node_name not in self.index:
                    raise ValueError(f"pod {pod.key} is bound to unknown node {pod.node_name!r}")
                self.assign(pod, self.index[pod.node_name], pod.gpu_indices or None)

    # Static indexes ---------------------------------------------------------------------
    def _index_models(self) -> tuple[tuple[str, ...], np.ndarray]:
        models = tuple(sorted({nd.gpu_model for nd in self.nodes if nd.gpu_model}))
        code = {m: k for k, m in enumerate(models)}
        return models, np.array([code.get(nd.gpu_model or "", -1) for nd in self.nodes], dtype=np.int64)

    def _index_taints(self) -> tuple[tuple[Taint, ...], np.ndarray]:
        taints = tuple(sorted({t for nd in self.nodes for t in nd.taints if t.effect in _FILTERING_EFFECTS}, key=str))
        matrix = np.zeros((len(self.nodes), len(taints)), dtype=bool)
        position = {t: k for k, t in enumerate(taints)}
        for i, node in enumerate(self.nodes):
            for t in node.taints:
                if t in position:
                    matrix[i, position[t]] = True
        return taints, matrix

    def labels(self, key: str) -> LabelIndex:
        """The index of one label key, built on first use (and again after :meth:`replace_node`)."""
        index = self._labels.get(key)
        if index is None:
            lookup: dict[str, int] = {}
            codes = np.full(len(self.nodes), -1, dtype=np.int64)
            numbers = np.full(len(self.nodes), np.nan)
            for i, node in enumerate(self.nodes):
                value = node.labels.get(key)
                if value is not None:
                    codes[i] = lookup.setdefault(value, len(lookup))
                    if _INTEGER.fullmatch(value):  # Gt/Lt compare labels as integers, as Kubernetes does
                        numbers[i] = int(value)
            index = self._labels[key] = LabelIndex(codes, MappingProxyType(lookup), numbers)
        return index

    def gpu_model_nodes(self, wanted: frozenset[str]) -> np.ndarray:
        """Read-only mask of the nodes whose GPU model is one of ``wanted`` (see
        :func:`~scheduler.model.gpu_models.accepts_model`), resolved once per distinct set."""
        mask = self._model_nodes.get(wanted)
        if mask is None:
            codes = [k for k, m in enumerate(self.gpu_models) if accepts_model(wanted, m)]
            mask = self._model_nodes[wanted] = np.isin(self.gpu_model, codes)
            mask.flags.writeable = False
        return mask

    # Requests ---------------------------------------------------------------------------
    def demand(self, pod: Pod) -> Demand:
        cols: list[int] = []
        amounts: list[int] = []
        unknown: list[str] = []
        for name, amount in pod.requests.items():
            if is_gpu(name):
                continue
            if name in self.column:
                cols.append(self.column[name])
                amounts.append(amount)
            else:
                unknown.append(name)
        if PODS in self.column and PODS not in pod.requests:
            cols.append(self.column[PODS])
            amounts.append(1)
        return Demand(np.array(cols, dtype=np.int64), np.array(amounts, dtype=np.int64), tuple(sorted(unknown)))

    def default_gpus(self, pod: Pod, node: int) -> tuple[int, ...]:
        """Whole GPUs: the lowest-index idle ones. A share: the fullest GPU it still fits (best fit)."""
        if pod.gpu is None:
            return ()
        free = self.gpu_free[node]
        if not pod.gpu.shared:
            return tuple(int(g) for g in np.flatnonzero(free == MILLI_PER_GPU)[: pod.gpu.count])
        fitting = np.where(free >= pod.gpu.milli, free, MILLI_PER_GPU + 1)
        best = int(np.argmin(fitting))
        return (best,) if fitting[best] <= MILLI_PER_GPU else ()

    # Mutation ---------------------------------------------------------------------------
    def replace_node(self, node: Node) -> None:
        """Take a new version of a node whose allocatable is unchanged: its labels, taints or GPU
        model, what cordoning, the node lifecycle controller's taints and relabelling change.

        The pods on it stay accounted, where building the snapshot again would account every pod
        of the cluster. Static indexes are built anew rather than changed, so copies keep theirs.
        Raises ValueError for a node the snapshot lacks or whose allocatable differs.
        """
        i = self.index.get(node.name)
        if i is None:
            raise ValueError(f"node {node.name!r} is not in the snapshot")
        old = self.nodes[i]
        if node.allocatable != old.allocatable:
            raise ValueError(f"node {node.name!r}: its allocatable changed; the snapshot must be built again")
        self.nodes = (*self.nodes[:i], node, *self.nodes[i + 1:])
        # Only the indexes of what changed: each is a pass over every node.
        if node.gpu_model != old.gpu_model:
            models, self.gpu_model = self._index_models()
            if models != self.gpu_models:  # other codes: what was cached by them no longer holds
                self.gpu_models, self.uid = models, next(_snapshot_ids)
            self._model_nodes = {}
        if node.taints != old.taints:
            self.taints, self.taint_matrix = self._index_taints()
        if node.labels != old.labels:
            self._labels = {}
        self.version[i] = next(_versions)

    def assign(self, pod: Pod, node: int, gpus: Sequence[int] | None = None) -> Assignment:
        """Account ``pod`` on ``node`` (and ``gpus``, by default :meth:`default_gpus`).

        Raises :class:`OvercommitError` and changes nothing if it does not fit.
        """
        if pod.key in self._assignments:
            raise ValueError(f"pod {pod.key} is already assigned")
        name = self.nodes[node].name
        demand = self.demand(pod)
        if demand.unknown:
            raise OvercommitError(f"pod {pod.key}: node {name} offers no {', '.join(demand.unknown)}")
        short = demand.amounts > self.free[demand.columns, node]
        if short.any():
            lacking = ", ".join(self.columns[c] for c in demand.columns[short])
            raise OvercommitError(f"pod {pod.key}: node {name} has too little {lacking} free")
        chosen = tuple(int(g) for g in (self.default_gpus(pod, node) if gpus is None else gpus))
        if pod.gpu is not None:
            free = self.gpu_free[node]
            if (
                len(chosen) != pod.gpu.count
                or len(set(chosen)) != len(chosen)
                or any(not 0 <= g < self.gpu_count[node] or free[g] < pod.gpu.milli for g in chosen)
            ):
                raise OvercommitError(f"pod {pod.key}: node {name} cannot give GPUs {list(chosen)} {pod.gpu.milli} milli each")
        elif chosen:
            raise OvercommitError(f"pod {pod.key} asks no GPU but was given GPUs {list(chosen)}")
        assignment = Assignment(pod, node, chosen)
        self._apply(assignment, -1)
        self._assignments[pod.key] = assignment
        return assignment

    def release(self, pod_key: str) -> Assignment:
        """Give back everything :meth:`assign` took for the pod."""
        assignment = self._assignments.pop(pod_key)
        self._apply(assignment, +1)
        return assignment

    def _apply(self, a: Assignment, sign: int) -> None:
        demand = self.demand(a.pod)
        self.free[demand.columns, a.node] += sign * demand.amounts
        if a.pod.gpu is not None:
            row = self.gpu_free[a.node]
            row[list(a.gpus)] += sign * a.pod.gpu.milli
            self.gpu_idle[a.node] += sign * a.pod.gpu.total_milli
            self.gpu_whole_free[a.node] = int(np.count_nonzero(row == MILLI_PER_GPU))
            self.gpu_most_free[a.node] = int(row.max())
        for key in _tally_keys(a.pod):
            counts = self._tallies[key]
            before = counts.get(a.node, 0)
            after = before - sign
            if after:
                counts[a.node] = after
            else:
                counts.pop(a.node, None)
            if (before == 0) != (after == 0):
                distinct = self._distinct.setdefault(key[0], np.zeros(len(self.nodes), dtype=np.int64))
                distinct[a.node] += 1 if after else -1
        self.version[a.node] = next(_versions)

    # Queries ----------------------------------------------------------------------------
    @property
    def assignments(self) -> Mapping[str, Assignment]:
        return MappingProxyType(self._assignments)

    def tally(self, category: str, value: object) -> np.ndarray:
        """Per node, how many assigned pods have ``value`` in ``category`` (e.g. a pipeline)."""
        out = np.zeros(len(self.nodes), dtype=np.int64)
        counts = self._tallies.get((category, value))
        if counts:
            out[list(counts)] = list(counts.values())
        return out

    def distinct(self, category: str) -> np.ndarray:
        """Per node, how many different values of ``category`` its assigned pods carry."""
        distinct = self._distinct.get(category)
        return np.zeros(len(self.nodes), dtype=np.int64) if distinct is None else distinct.copy()

    def copy(self) -> Snapshot:
        """An independent copy for what-if decisions; static indexes are shared."""
        clone = object.__new__(Snapshot)
        clone.__dict__.update(self.__dict__)
        for attr in ("free", "gpu_free", "gpu_whole_free", "gpu_most_free", "gpu_idle", "version"):
            setattr(clone, attr, getattr(self, attr).copy())
        clone._assignments = dict(self._assignments)
        clone._tallies = defaultdict(dict, {k: dict(v) for k, v in self._tallies.items()})
        clone._distinct = {k: v.copy() for k, v in self._distinct.items()}
        return clone

    def __len__(self) -> int:
        return len(self.nodes)
