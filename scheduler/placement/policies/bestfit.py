"""bestfit: the node left with the least free cpu and GPU (the FGD paper's Best-fit baseline).

score = 1 - (0.5 * cpu left / largest node cpu + 0.5 * GPU left / largest node GPU); the paper
normalises by 128 cores and 8 GPUs, which are the largest openb nodes. Memory is ignored.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.resources import CPU
from scheduler.model.snapshot import Snapshot
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy


class BestFit:
    name = "bestfit"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        col = snap.column[CPU]
        cpu_left = (snap.free[col, nodes] - pod.requests[CPU]) / max(int(snap.allocatable[col].max(initial=0)), 1)
        gpu_left = (snap.gpu_idle[nodes] - (pod.gpu.total_milli if pod.gpu else 0)) / max(snap.gpu_capacity_max, 1)
        return MAX_SCORE * (1 - 0.5 * cpu_left - 0.5 * gpu_left)


@policy("bestfit")
def _make(_: PolicyContext) -> BestFit:
    return BestFit()
