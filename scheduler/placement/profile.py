"""Placement profiles: which policies score which pods, with what weights.

``default`` places GPU pods by fragmentation gradient descent (fgd-cpu: FGD's fragmentation, with
the idle GPU that a node's CPU cannot feed counted too) when it knows the workload the cluster
expects, and packs them (gpu-pack) until it does; it spreads CPU-only pods (cpu-spread), and for
both keeps pipeline siblings apart and favours cached datasets; the workload classes decide the
rest (serving GPU pods are spread, not packed, and serving replicas keep apart). fgd-cpu leaves
less GPU idle than fgd, and fgd than gpu-pack, on every openb trace (benchmarks/README.md,
"Simulator"). Any single policy name gives the profile that scores every pod with that policy
alone, which is how the FGD paper compares them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from scheduler.model.cluster import Pod, WorkloadKind
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from scheduler.placement.scoring import PolicyContext, Scorer, available, make
from scheduler.placement.workload import TargetWorkload

DEFAULT = "default"
Weighted = tuple[tuple[Scorer, float], ...]


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    gpu: Weighted
    cpu: Weighted
    #: Per workload class, scorers added for it (replica-spread for serving).
    extra: Mapping[WorkloadKind, Weighted] = field(default_factory=dict)
    classes: Mapping[WorkloadKind, WorkloadClass] = field(default_factory=lambda: DEFAULT_CLASSES)

    def scorers(self, pod: Pod) -> Weighted:
        packed = pod.uses_gpu and self.classes[pod.kind].gpu_pack
        return (self.gpu if packed else self.cpu) + self.extra.get(pod.kind, ())


def profile_names() -> tuple[str, ...]:
    return (DEFAULT, *available())


def follows_workload(name: str) -> bool:
    """Whether the profile ``name`` is built from the workload the cluster expects, so that a live
    one must be rebuilt as that changes: ``default`` (gpu-pack until it knows one, fgd-cpu then)
    and every policy that cannot be built without one."""
    if name == DEFAULT:
        return True
    try:
        build_profile(name)
    except ValueError:
        return True
    return False


def build_profile(
    name: str = DEFAULT, *, seed: int = 0, rng: np.random.Generator | None = None, workload: TargetWorkload | None = None,
    classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES,
) -> Profile:
    """The profile called ``name``; randomness comes from ``rng`` or a generator seeded with ``seed``."""
    context = PolicyContext(rng if rng is not None else np.random.default_rng(seed), workload)
    if name == DEFAULT:
        common = ((make("pipeline-spread", context), 1.0), (make("data-locality", context), 1.0))
        spread = ((make("replica-spread", context), 1.0),)
        extra = {kind: spread for kind, c in classes.items() if c.spread_replicas}
        gpu = make("fgd-cpu" if workload is not None else "gpu-pack", context)
        return Profile(name, ((gpu, 1.0), *common), ((make("cpu-spread", context), 1.0), *common), extra, classes)
    alone = ((make(name, context), 1.0),)
    return Profile(name, alone, alone)
