"""The placement engine: filter, score, choose, assign devices. Pure: it reads the snapshot and
returns a decision; the caller applies it (``snapshot.assign``) or sends it to Kubernetes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Decision, Placement, Unschedulable
from scheduler.placement.filters import DEFAULT_FILTERS, Filter, FilterResult, run_filters
from scheduler.placement.profile import Profile
from scheduler.placement.scoring import SharedGpuChooser


class Placer:
    def __init__(self, profile: Profile, filters: Sequence[Filter] = DEFAULT_FILTERS):
        self.profile = profile
        self.filters = tuple(filters)

    def filter(self, snap: Snapshot, pod: Pod, among: np.ndarray | None = None) -> FilterResult:
        return run_filters(snap, pod, self.filters, among)

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
        """The weighted total over the policies with an opinion on this pod, and each one's scores.

        Each policy's scores are cut to whole numbers in [0, 100], as kube-scheduler's score
        plugins return them: nodes that differ by less than a point tie, and ties go to node
        order. The FGD paper's simulator scores the same way and its results depend on it.
        """
        total = np.zeros(len(nodes))
        parts: list[tuple[str, np.ndarray]] = []
        weights = 0.0
        for scorer, weight in self.profile.scorers(pod):
            scores = scorer.score(snap, pod, nodes)
            if scores is not None:
                scores = np.floor(scores)
                total += weight * scores
                weights += weight
                parts.append((scorer.name, scores))
        return (total / weights if weights else total), parts

    def gpus(self, snap: Snapshot, pod: Pod, node: int) -> tuple[int, ...]:
        """Devices on the chosen node: the first policy that picks shared GPUs decides for shares."""
        if pod.gpu is not None and pod.gpu.shared:
            for scorer, _ in self.profile.scorers(pod):
                if isinstance(scorer, SharedGpuChooser):
                    return (scorer.choose_shared_gpu(snap, pod, node),)
        return snap.default_gpus(pod, node)

    def decide(self, snap: Snapshot, pod: Pod, among: np.ndarray | None = None) -> Decision:
        """Where ``pod`` should go (optionally only ``among`` these node indices), and why.

        Ties go to the lowest node index, so equal inputs give equal decisions.
        """
        result = self.filter(snap, pod, among)
        nodes = result.feasible
        if len(nodes) == 0:
            return Unschedulable(pod, result.rejections)
        total, parts = self.score(snap, pod, nodes)
        best = int(np.argmax(total))
        node = int(nodes[best])
        return Placement(
            pod=pod,
            node=snap.names[node],
            node_index=node,
            gpus=self.gpus(snap, pod, node),
            score=float(total[best]),
            scores=tuple((name, float(s[best])) for name, s in parts),
            feasible=len(nodes),
        )
