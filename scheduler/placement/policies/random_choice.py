"""random: any feasible node, uniformly, from the injected random generator (a baseline)."""

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
        return MAX_SCORE * self.rng.random(len(nodes))


@policy("random")
def _make(context: PolicyContext) -> RandomChoice:
    return RandomChoice(context.rng)
