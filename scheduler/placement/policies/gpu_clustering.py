"""gpu-clustering: GPU pods of one size gather on the same nodes (the FGD paper's baseline).

Bands, best first: nodes holding only pods of this GPU share; nodes holding this share among
others; idle nodes; nodes holding other shares only. Within a band, fuller nodes win.
CPU-only pods get no preference.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import GPU_SHARE, Snapshot
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy


class GpuClustering:
    name = "gpu-clustering"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        if pod.gpu is None:
            return np.zeros(len(nodes))
        same = snap.tally(GPU_SHARE, pod.gpu.milli)[nodes] > 0
        kinds = snap.distinct(GPU_SHARE)[nodes]
        band = np.select([same & (kinds == 1), same, kinds == 0], [3, 2, 1], default=0)
        fullness = 1 - snap.gpu_idle[nodes] / max(snap.gpu_capacity_max, 1)
        return MAX_SCORE / 4 * (band + fullness)


@policy("gpu-clustering")
def _make(_: PolicyContext) -> GpuClustering:
    return GpuClustering()
