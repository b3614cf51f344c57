"""Placement profiles: which policies score which pods, with what weights.

``default`` packs GPU pods (gpu-pack) and spreads CPU-only pods (cpu-spread), and for both
keeps pipeline siblings apart and favours cached datasets. Any single policy name gives the
profile that scores every pod with that policy alone, which is how the FGD paper compares them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.placement.scoring import PolicyContext, Scorer, available, make
from scheduler.placement.workload import TargetWorkload

DEFAULT = "default"
Weighted = tuple[tuple[Scorer, float], ...]


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    gpu: Weighted
    cpu: Weighted

    def scorers(self, pod: Pod) -> Weighted:
        return self.gpu if pod.uses_gpu else self.cpu


def profile_names() -> tuple[str, ...]:
    return (DEFAULT, *available())


def build_profile(
    name: str = DEFAULT, *, seed: int = 0, rng: np.random.Generator | None = None, workload: TargetWorkload | None = None
) -> Profile:
    """The profile called ``name``; randomness comes from ``rng`` or a generator seeded with ``seed``."""
    context = PolicyContext(rng if rng is not None else np.random.default_rng(seed), workload)
    if name == DEFAULT:
        common = ((make("pipeline-spread", context), 1.0), (make("data-locality", context), 1.0))
        return Profile(name, ((make("gpu-pack", context), 1.0), *common), ((make("cpu-spread", context), 1.0), *common))
    alone = ((make(name, context), 1.0),)
    return Profile(name, alone, alone)
