"""gpu-packing: the FGD paper's GPU Packing baseline.

Best first: a share that fits on a GPU already in use (the fuller that GPU, the better); then
idle GPUs of a node already in use (fewer of them taken is better); then an idle node (the node
with fewer GPUs is better). CPU-only pods get no preference.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.resources import MILLI_PER_GPU
from scheduler.model.snapshot import Snapshot
from scheduler.placement.policies._arrays import best_fit_share
from scheduler.placement.scoring import PolicyContext, policy


class GpuPacking:
    name = "gpu-packing"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        if pod.gpu is None:
            return np.zeros(len(nodes))
        whole_free = snap.gpu_whole_free[nodes]
        idle_node = whole_free == snap.gpu_count[nodes]
        if pod.gpu.shared:
            fit = best_fit_share(snap, pod.gpu.milli, nodes)
            idle_gpus_taken = (fit == MILLI_PER_GPU).astype(np.int64)
        else:
            fit = np.full(len(nodes), MILLI_PER_GPU)
            idle_gpus_taken = np.full(len(nodes), pod.gpu.count)
        on_used_gpu = np.maximum(100 - (fit * 100 // MILLI_PER_GPU) // 10, 50)
        on_used_node = np.maximum(50 - idle_gpus_taken, 33)
        on_idle_node = np.maximum(33 - whole_free, whole_free)
        return np.where(idle_node, on_idle_node, np.where(idle_gpus_taken > 0, on_used_node, on_used_gpu)).astype(float)


@policy("gpu-packing")
def _make(_: PolicyContext) -> GpuPacking:
    return GpuPacking()
