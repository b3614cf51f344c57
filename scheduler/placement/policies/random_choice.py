"""random: any feasible node, uniformly, from the injected random generator (a baseline).

One node drawn gets the whole score and the others none: random scores cut to whole numbers, as
every score is, would tie and go to the lowest node index, which packs. A share goes to a GPU
drawn uniformly among those of the node it fits, as the FGD paper runs its Random baseline (its
simulator's random GPU selection); the other policies take the fullest GPU that fits.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import Snapshot
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy


class RandomChoice:
    name = "random"

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
        scores = np.zeros(len(nodes))
        scores[self.rng.integers(len(nodes))] = MAX_SCORE
        return scores

    def choose_shared_gpu(self, snap: Snapshot, pod: Pod, node: int) -> int:
        assert pod.gpu is not None
        return int(self.rng.choice(np.flatnonzero(snap.gpu_free[node] >= pod.gpu.milli)))


@policy("random")
def _make(context: PolicyContext) -> RandomChoice:
    return RandomChoice(context.rng)
