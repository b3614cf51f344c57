"""pipeline-spread: tasks of one pipeline keep off the machines already running their siblings.

A node with no sibling always beats one with siblings, fewer siblings beat more; among equals the
less loaded node wins, which is also all that pods of distinct pipelines ask for.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import PIPELINE, Snapshot
from scheduler.placement.policies._arrays import sibling_spread
from scheduler.placement.scoring import PolicyContext, policy


class PipelineSpread:
    name = "pipeline-spread"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray | None:
        if not pod.pipeline:
            return None
        return sibling_spread(snap, pod, nodes, snap.tally(PIPELINE, pod.pipeline)[nodes])


@policy("pipeline-spread")
def _make(_: PolicyContext) -> PipelineSpread:
    return PipelineSpread()
