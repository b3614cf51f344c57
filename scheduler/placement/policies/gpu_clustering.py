"""gpu-clustering: GPU pods of one class gather on the same nodes (the FGD paper's baseline).

A pod's class is its GPU affinity: every share is one class, whole-GPU pods one per GPU count
(:func:`~scheduler.model.snapshot.gpu_affinity`, as the paper's simulator counts them). Bands,
best first: nodes holding only pods of this class; nodes holding this class among others; nodes
with no GPU pod; nodes holding other classes only. Within a band, nodes with less GPU free win,
free counted against the largest node (a node of fewer GPUs never looks full). CPU-only pods get
no preference.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import GPU_AFFINITY, Snapshot, gpu_affinity
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy


class GpuClustering:
    name = "gpu-clustering"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        if pod.gpu is None:
            return np.zeros(len(nodes))
        same = snap.tally(GPU_AFFINITY, gpu_affinity(pod.gpu))[nodes] > 0
        kinds = snap.distinct(GPU_AFFINITY)[nodes]
        band = np.select([same & (kinds == 1), same, kinds == 0], [3, 2, 1], default=0)
        fullness = 1 - snap.gpu_idle[nodes] / max(snap.gpu_capacity_max, 1)
        return MAX_SCORE / 4 * (band + fullness)


@policy("gpu-clustering")
def _make(_: PolicyContext) -> GpuClustering:
    return GpuClustering()
