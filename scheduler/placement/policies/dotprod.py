"""dotprod: Tetris-style alignment (the FGD paper's DotProduct baseline).

The pod's request and the node's free capacity, each as shares of the node's capacity in cpu and
GPU, are multiplied; the smaller the dot product, the higher the score (the GPU dimensions of a
node are merged into one, as the paper's simulator does by default).
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.resources import CPU, MILLI_PER_GPU
from scheduler.model.snapshot import Snapshot
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy


class DotProduct:
    name = "dotprod"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        col = snap.column[CPU]
        cpu_cap = np.maximum(snap.allocatable[col, nodes], 1)
        gpu_cap = np.maximum(snap.gpu_count[nodes] * MILLI_PER_GPU, 1)
        gpu_req = pod.gpu.total_milli if pod.gpu else 0
        dot = (pod.requests[CPU] / cpu_cap) * (snap.free[col, nodes] / cpu_cap) + (gpu_req / gpu_cap) * (
            snap.gpu_idle[nodes] / gpu_cap
        )
        return MAX_SCORE * (1 - dot / 2)


@policy("dotprod")
def _make(_: PolicyContext) -> DotProduct:
    return DotProduct()
