"""What a run records about the cluster as it fills: allocated GPU and stranded GPU."""

from __future__ import annotations

import re

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.resources import CPU
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Unschedulable
from scheduler.placement.policies.fgd import Fgd
from scheduler.placement.workload import TargetWorkload


def gpu_milli(pod: Pod) -> int:
    """The GPU a pod requests, in milli-GPU (a 4-GPU pod: 4000)."""
    return pod.gpu.total_milli if pod.gpu is not None else 0


class ClusterGauge:
    """Allocated GPU, allocated cpu and fragmentation (the FGD paper's expected stranded GPU for
    the target workload), kept current as pods come and go."""

    def __init__(self, snap: Snapshot, workload: TargetWorkload):
        self.snap = snap
        self.gpu_capacity = int(np.where(snap.gpu_free > 0, snap.gpu_free, 0).sum())
        self.cpu_capacity = int(snap.allocatable[snap.column[CPU]].sum())
        self.gpu_allocated = 0
        self.cpu_allocated = 0
        self._fragmentation = Fgd(workload)

    def placed(self, pod: Pod) -> None:
        self.gpu_allocated += gpu_milli(pod)
        self.cpu_allocated += pod.requests[CPU]

    def released(self, pod: Pod) -> None:
        self.gpu_allocated -= gpu_milli(pod)
        self.cpu_allocated -= pod.requests[CPU]

    def fragmented_milli(self) -> float:
        return float(self._fragmentation.node_fragmentation(self.snap).sum())


_SHARE = re.compile(r"with \d+m free")


def failure_reason(decision: Unschedulable) -> str:
    """The reason that turned away the most nodes, as one category for counting failures
    (GPU-share reasons without their amount, so that they count together)."""
    counts = decision.rejections.counts()
    return _SHARE.sub("with enough free", counts.most_common(1)[0][0]) if counts else "no nodes"
