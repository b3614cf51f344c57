"""dotprod: Tetris-style alignment (the FGD paper's DotProduct baseline).

The pod's request and the node's free capacity, in cpu and GPU, are multiplied dimension by
dimension, each normalised by the largest node's capacity (the paper's ``-norm max``; its 128
cores and 8 GPUs are the largest openb nodes); the smaller the dot product, the higher the score.
A node's GPUs are merged into one dimension (``-dimext merge``), and a share takes the fullest GPU
it fits (``-gpusel best``), as the paper runs this baseline.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.resources import CPU
from scheduler.model.snapshot import Snapshot
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy


class DotProduct:
    name = "dotprod"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        col = snap.column[CPU]
        cpu_max = max(int(snap.allocatable[col].max(initial=0)), 1)
        gpu_max = max(snap.gpu_capacity_max, 1)
        gpu_req = pod.gpu.total_milli if pod.gpu else 0
        dot = (pod.requests[CPU] / cpu_max) * (snap.free[col, nodes] / cpu_max) + (gpu_req / gpu_max) * (
            snap.gpu_idle[nodes] / gpu_max
        )
        return MAX_SCORE * (1 - dot / 2)


@policy("dotprod")
def _make(_: PolicyContext) -> DotProduct:
    return DotProduct()
