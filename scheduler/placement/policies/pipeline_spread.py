"""pipeline-spread: tasks of one pipeline keep off the machines already running their siblings.

A node with no sibling always beats one with siblings, fewer siblings beat more; among equals the
less loaded node wins, which is also all that pods of distinct pipelines ask for.
"""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import PIPELINE, Snapshot
from scheduler.placement.policies._arrays import cpu_memory_free_after
from scheduler.placement.scoring import PolicyContext, policy


class PipelineSpread:
    name = "pipeline-spread"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray | None:
        if not pod.pipeline:
            return None
        siblings = snap.tally(PIPELINE, pod.pipeline)[nodes]
        free = np.clip(cpu_memory_free_after(snap, pod, nodes), 0.0, 1.0)
        return np.where(siblings == 0, 60 + 40 * free, 40 * free / np.maximum(siblings, 1))


@policy("pipeline-spread")
def _make(_: PolicyContext) -> PipelineSpread:
    return PipelineSpread()
