"""replica-spread: serving replicas of one deployment keep off the nodes already running one, so
that one machine failing takes down as few replicas as possible."""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import REPLICAS, Snapshot
from scheduler.placement.policies._arrays import sibling_spread
from scheduler.placement.scoring import PolicyContext, policy


class ReplicaSpread:
    name = "replica-spread"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray | None:
        if not pod.deployment:
            return None
        return sibling_spread(snap, pod, nodes, snap.tally(REPLICAS, (pod.namespace, pod.deployment))[nodes])


@policy("replica-spread")
def _make(_: PolicyContext) -> ReplicaSpread:
    return ReplicaSpread()
