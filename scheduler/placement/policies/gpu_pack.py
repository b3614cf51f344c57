"""gpu-pack: touch the fewest GPUs and nodes so that whole GPUs and whole nodes stay free.

For a GPU pod, in order of weight: a share goes onto a GPU that is already in use; the node
left with the least idle GPU capacity wins (best fit across the cluster); a node already
running work beats an untouched one. For a CPU-only pod: hosts whose GPUs are busy or absent,
so CPU work does not strand idle GPUs, and nodes already in use.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.resources import CPU, MILLI_PER_GPU
from scheduler.model.snapshot import Snapshot
from scheduler.placement.policies._arrays import best_fit_share, free_fraction_after, idle_gpu_fraction
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy


class GpuPack:
    name = "gpu-pack"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        col = snap.column[CPU]
        in_use = (snap.gpu_idle[nodes] < snap.gpu_count[nodes] * MILLI_PER_GPU) | (
            snap.free[col, nodes] < snap.allocatable[col, nodes]
        )
        if pod.gpu is None:
            busy_gpus = 1 - idle_gpu_fraction(snap, nodes)
            cpu_used = 1 - free_fraction_after(snap, pod, nodes, CPU)
            return MAX_SCORE * (0.6 * busy_gpus + 0.2 * cpu_used + 0.2 * in_use)
        if pod.gpu.shared:
            on_used_gpu = best_fit_share(snap, pod.gpu.milli, nodes) < MILLI_PER_GPU
        else:
            on_used_gpu = np.ones(len(nodes), dtype=bool)
        left = (snap.gpu_idle[nodes] - pod.gpu.total_milli) / max(snap.gpu_capacity_max, 1)
        return MAX_SCORE * (0.4 * on_used_gpu + 0.4 * (1 - left) + 0.2 * in_use)


@policy("gpu-pack")
def _make(_: PolicyContext) -> GpuPack:
    return GpuPack()
