"""The workload a cluster expects: the mix of pod shapes that fragmentation is measured against."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.resources import CPU


@dataclass(frozen=True, slots=True)
class PodShape:
    cpu_milli: int
    gpu_milli: int  # per GPU; 0 for CPU-only pods
    gpu_count: int
    models: frozenset[str] | None = None

    @classmethod
    def of(cls, pod: Pod) -> PodShape:
        if pod.gpu is None:
            return cls(pod.requests[CPU], 0, 0)
        return cls(pod.requests[CPU], pod.gpu.milli, pod.gpu.count, pod.gpu.models)


@dataclass(frozen=True, slots=True)
class TargetWorkload:
    """Pod shapes with how often each was seen, most frequent first."""

    shapes: tuple[PodShape, ...]
    counts: tuple[int, ...]

    @property
    def weights(self) -> tuple[float, ...]:
        """Each shape's probability."""
        total = sum(self.counts)
        return tuple(n / total for n in self.counts)

    @classmethod
    def from_pods(cls, pods: Iterable[Pod], coverage: float = 0.95) -> TargetWorkload:
        """The most frequent shapes that together cover ``coverage`` of the pods, renormalised
        (the FGD paper's target workload). Equal counts keep first-seen order, so it is stable."""
        counts = Counter(PodShape.of(p) for p in pods)
        if not counts:
            raise ValueError("a target workload needs at least one pod")
        total = sum(counts.values())
        kept: list[tuple[PodShape, int]] = []
        covered = 0
        for shape, n in counts.most_common():
            kept.append((shape, n))
            covered += n
            if covered >= coverage * total:
                break
        return cls(tuple(s for s, _ in kept), tuple(n for _, n in kept))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """cpu milli, per-GPU milli, GPU count and count seen of each shape, as integer arrays."""
        return (
            np.array([s.cpu_milli for s in self.shapes], dtype=np.int64),
            np.array([s.gpu_milli for s in self.shapes], dtype=np.int64),
            np.array([s.gpu_count for s in self.shapes], dtype=np.int64),
            np.array(self.counts, dtype=np.int64),
        )
