"""cpu-spread: CPU-only work goes where cpu and memory are least allocated, away from idle GPUs.

Spreading keeps any one node from becoming a hot spot; steering clear of hosts with idle GPUs
keeps their cpu free for the GPU pods that need it there (a GPU is useless without cpu).
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import Snapshot
from scheduler.placement.policies._arrays import cpu_memory_free_after, idle_gpu_fraction
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy


class CpuSpread:
    name = "cpu-spread"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        return MAX_SCORE * (0.5 * cpu_memory_free_after(snap, pod, nodes) + 0.5 * (1 - idle_gpu_fraction(snap, nodes)))


@policy("cpu-spread")
def _make(_: PolicyContext) -> CpuSpread:
    return CpuSpread()
