"""fgd-cpu: FGD whose fragmentation also counts the GPU that a node's CPU cannot feed.

FGD (:mod:`.fgd`) counts a node's idle GPU as lost to a pod shape only once one pod of that
shape no longer fits there. A node may still fit one such pod and yet have far less CPU left
than its idle GPUs will need: the GPU pods the cluster expects ask, together, one milli-GPU per
``1 / gpu_per_cpu`` CPU milli (the target workload's GPU shapes, weighted by how often each is
seen). So of the GPU that FGD counts as usable on a node, whatever its free CPU cannot feed at
that ratio, ``usable - cpu_free * gpu_per_cpu``, is counted as fragment too: GPU that stays idle
because another resource on the machine ran out first, the stranding Borg measures (Verma et
al., EuroSys '15) and Tetris packs against (Grandl et al., SIGCOMM '14). Placing a CPU-hungry
pod on a node with idle GPUs then shows as fragmentation growth, and the descent steers it
elsewhere. Like PWR (Lettich et al., "Power- and Fragmentation-aware Online Scheduling for GPU
Datacenters", 2024), which adds a power term beside FGD's, it keeps FGD's measure and adds the
one it lacks.

Fragmentation stays an integer in FGD's units (sum over shapes of count seen x milli-GPU), so
equal node states still score exactly equal and ties break as FGD's do.
"""

from __future__ import annotations

import numpy as np

from scheduler.placement.policies.fgd import Fgd
from scheduler.placement.scoring import PolicyContext, policy
from scheduler.placement.workload import TargetWorkload


class FgdCpu(Fgd):
    name = "fgd-cpu"

    def __init__(self, workload: TargetWorkload):
        super().__init__(workload)
        gpu = self.count * self.milli
        gpu_milli = int((self.seen * gpu).sum())
        cpu_milli = int((self.seen * np.where(gpu > 0, self.cpu, 0)).sum())
        # Milli-GPU that one CPU milli feeds; None: the GPU shapes ask no CPU, nothing is stranded.
        self.gpu_per_cpu = gpu_milli / cpu_milli if cpu_milli else None

    def _frag(self, models: np.ndarray, cpu_free: np.ndarray, small: np.ndarray, enough: np.ndarray,
              idle: np.ndarray) -> np.ndarray:
        frag = super()._frag(models, cpu_free, small, enough, idle)
        if self.gpu_per_cpu is None:
            return frag
        seen = self.scale // 1000  # FGD's units: milli-GPU times the pods seen
        usable = idle * seen - frag
        fed = np.floor(cpu_free * self.gpu_per_cpu * seen).astype(np.int64)
        return frag + np.maximum(0, usable - fed)


@policy("fgd-cpu")
def _make(context: PolicyContext) -> FgdCpu:
    if context.workload is None:
        raise ValueError("fgd-cpu needs a target workload: the pod shapes the cluster expects")
    return FgdCpu(context.workload)
