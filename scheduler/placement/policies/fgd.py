"""fgd: Fragmentation Gradient Descent (Weng et al., "Beware of Fragmentation", USENIX ATC '23).

The fragment of a node for one expected pod shape is the idle GPU capacity that shape could not
use there: all of it when the shape cannot run on the node at all (CPU-only shape, GPU model,
too little cpu, too few GPUs with enough free), else the free share of the GPUs too small for it.
A node's fragmentation is that amount averaged over the target workload. FGD puts each pod, and
a GPU-sharing pod on the GPU, where fragmentation grows least:
score = sigmoid((F_before - F_after) / 1000). Memory is ignored, as in the paper.

Fragmentation depends only on a node's GPU model, free cpu and the multiset of its GPUs' free
shares. Nodes alike in those share one *state*; states are interned once with their per-shape
terms, and a decision evaluates each distinct state among the candidates once. On a large
cluster most nodes are alike (untouched nodes of one type, full nodes), which is what keeps a
decision within budget at thousands of nodes.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.gpu_models import accepts_model
from scheduler.model.resources import CPU, MILLI_PER_GPU
from scheduler.model.snapshot import Snapshot
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy
from scheduler.placement.workload import TargetWorkload


class _States:
    """Distinct node states of one snapshot and its copies, with the fragment terms of each, in
    growable arrays. Copies share the snapshot's uid, and a node's version names one state of it in
    all of them: the admission loop's copy of each cycle starts from the last cycle's states."""

    def __init__(self, snap: Snapshot, shapes: int):
        self.snapshot = snap.uid
        self.version = np.full(len(snap), -1, dtype=np.int64)  # forces a first full refresh
        self.of_node = np.zeros(len(snap), dtype=np.int64)
        self.ids: dict[tuple[int, int, bytes], int] = {}
        self.size = 0
        width = snap.gpu_free.shape[1]
        capacity = 256
        self.model = np.zeros(capacity, dtype=np.int64)
        self.cpu = np.zeros(capacity, dtype=np.int64)
        self.free = np.zeros((capacity, width), dtype=np.int64)  # sorted, largest first
        self.small = np.zeros((capacity, shapes), dtype=np.int64)  # free milli on GPUs too small per shape
        self.enough = np.zeros((capacity, shapes), dtype=np.int64)  # GPUs with enough free per shape
        self.frag = np.zeros(capacity, dtype=np.int64)

    def grow(self, needed: int) -> None:
        capacity = len(self.cpu)
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity)
        for name in ("model", "cpu", "free", "small", "enough", "frag"):
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[: self.size] = old[: self.size]
            setattr(self, name, new)


class Fgd:
    name = "fgd"

    def __init__(self, workload: TargetWorkload):
        self.workload = workload
        # Fragmentation is kept as an integer, sum(count_m * F_m), so equal states score exactly
        # equal and ties break the same way on every machine; dividing by the total count and
        # by 1000 gives the paper's scale.
        self.cpu, self.milli, self.count, self.seen = workload.arrays()
        self.scale = 1000 * int(self.seen.sum())
        self._states: _States | None = None
        self._model_ok = np.zeros((0, 0), dtype=bool)

    # Fragmentation ----------------------------------------------------------------------
    def _frag(self, models: np.ndarray, cpu_free: np.ndarray, small: np.ndarray, enough: np.ndarray,
              idle: np.ndarray) -> np.ndarray:
        fits = self._model_ok[:, models].T & (cpu_free[:, None] >= self.cpu) & (enough >= self.count)
        return np.where(fits, small, idle[:, None]) @ self.seen

    def _model_table(self, snap: Snapshot) -> np.ndarray:
        """Shape x GPU model code: may the shape run there? The last column stands for code -1,
        a node whose GPU model is unknown (or that has no GPU, which no GPU shape fits anyway).
        CPU-only shapes never fit, so all of a node's idle GPU counts against them."""
        ok = np.zeros((len(self.workload.shapes), len(snap.gpu_models) + 1), dtype=bool)
        for s, shape in enumerate(self.workload.shapes):
            if shape.gpu_count:
                for k, model in enumerate((*snap.gpu_models, None)):
                    ok[s, k] = accepts_model(shape.models, model)
        return ok

    def _refresh(self, snap: Snapshot) -> _States:
        """Bring the node -> state map up to date with the nodes changed since the last call."""
        st = self._states
        if st is None or st.snapshot != snap.uid:
            st = self._states = _States(snap, len(self.workload.shapes))
            self._model_ok = self._model_table(snap)
        rows = np.flatnonzero(snap.version != st.version)
        if len(rows) == 0:
            return st
        st.version[rows] = snap.version[rows]
        models = snap.gpu_model[rows]
        cpus = snap.free[snap.column[CPU], rows]
        frees = -np.sort(-snap.gpu_free[rows], axis=1)
        fresh: list[int] = []
        for i, key in enumerate(zip(models.tolist(), cpus.tolist(), map(bytes, frees))):
            sid = st.ids.get(key)
            if sid is None:
                sid = st.ids[key] = st.size + len(fresh)
                fresh.append(i)
            st.of_node[rows[i]] = sid
        if fresh:
            new = np.arange(st.size, st.size + len(fresh))
            st.grow(st.size + len(fresh))
            st.model[new], st.cpu[new], st.free[new] = models[fresh], cpus[fresh], frees[fresh]
            free = st.free[new][:, None, :]
            need = self.milli[None, :, None]
            st.small[new] = np.where((free >= 0) & (free < need), free, 0).sum(axis=2)
            st.enough[new] = (free >= need).sum(axis=2)
            st.size += len(fresh)
            st.frag[new] = self._frag(st.model[new], st.cpu[new], st.small[new], st.enough[new], self._idle(st.free[new]))
        return st

    @staticmethod
    def _idle(free: np.ndarray) -> np.ndarray:
        return np.where(free > 0, free, 0).sum(axis=1)

    def node_fragmentation(self, snap: Snapshot) -> np.ndarray:
        """Expected idle GPU milli each node's current state strands for the target workload."""
        st = self._refresh(snap)
        return st.frag[st.of_node] / self.seen.sum()

    # Scoring ----------------------------------------------------------------------------
    def _share_after(self, st: _States, states: np.ndarray, free: np.ndarray, pod: Pod,
                     distinct: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each GPU of ``free`` (rows aligned with ``states``) the share fits on: the row,
        the GPU column and the fragmentation after. ``distinct`` skips GPUs whose free share
        repeats the previous column's (rows sorted: interchangeable GPUs)."""
        assert pod.gpu is not None
        need = pod.gpu.milli
        valid = free >= need
        if distinct:
            valid[:, 1:] &= free[:, 1:] != free[:, :-1]
        row, col = np.nonzero(valid)
        before = free[row, col][:, None]
        after = before - need
        shape_need = self.milli[None, :]
        s = states[row]
        small = st.small[s] - np.where(before < shape_need, before, 0) + np.where(after < shape_need, after, 0)
        enough = st.enough[s] - (before >= shape_need) + (after >= shape_need)
        frag = self._frag(st.model[s], st.cpu[s] - pod.requests[CPU], small, enough, self._idle(st.free[s]) - need)
        return row, col, frag

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        st = self._refresh(snap)
        of_node = st.of_node[nodes]
        seen = np.zeros(st.size, dtype=bool)
        seen[of_node] = True
        states = np.flatnonzero(seen)
        position = np.zeros(st.size, dtype=np.int64)
        position[states] = np.arange(len(states))
        before = st.frag[states]
        if pod.gpu is not None and pod.gpu.shared:
            row, _, frag = self._share_after(st, states, st.free[states], pod, distinct=True)
            after = np.full(len(states), np.iinfo(np.int64).max // 2)
            if len(row):
                starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
                after[row[starts]] = np.minimum.reduceat(frag, starts)
        else:
            # Whole GPUs are taken idle: the "too small" terms stay, and every shape loses
            # that many big-enough GPUs.
            taken = pod.gpu.count if pod.gpu is not None else 0
            after = self._frag(st.model[states], st.cpu[states] - pod.requests[CPU], st.small[states],
                               st.enough[states] - taken, self._idle(st.free[states]) - MILLI_PER_GPU * taken)
        return self._sigmoid_score(after - before)[position[of_node]]

    def _sigmoid_score(self, growth: np.ndarray) -> np.ndarray:
        """100 x sigmoid(-growth / 1000) for growth in the integer fragmentation units."""
        return MAX_SCORE / (1 + np.exp(np.clip(growth / self.scale, -50, 50)))

    def choose_shared_gpu(self, snap: Snapshot, pod: Pod, node: int) -> int:
        """The GPU on ``node`` with the best whole-number score (lowest index on ties)."""
        st = self._refresh(snap)
        state = st.of_node[[node]]
        _, col, frag = self._share_after(st, state, snap.gpu_free[[node]], pod, distinct=False)
        return int(col[np.argmax(np.floor(self._sigmoid_score(frag - st.frag[state])))])


@policy("fgd")
def _make(context: PolicyContext) -> Fgd:
    if context.workload is None:
        raise ValueError("fgd needs a target workload: the pod shapes the cluster expects")
    return Fgd(context.workload)
