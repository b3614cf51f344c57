"""data-locality: a pod that reads datasets prefers nodes holding their Fluid cache.

Fluid labels a node ``fluid.io/s-<namespace>-<dataset>`` once it caches that dataset; the score is
the share of the pod's datasets cached on the node.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod, fluid_cache_label
from scheduler.model.snapshot import Snapshot
from scheduler.placement.scoring import MAX_SCORE, PolicyContext, policy


class DataLocality:
    name = "data-locality"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray | None:
        if not pod.datasets:
            return None
        cached = sum((snap.labels(fluid_cache_label(pod.namespace, d)).codes[nodes] >= 0).astype(float) for d in pod.datasets)
        return MAX_SCORE * cached / len(pod.datasets)


@policy("data-locality")
def _make(_: PolicyContext) -> DataLocality:
    return DataLocality()
