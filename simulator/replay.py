"""Replay: pods placed in the order given, onto nodes in the order given, each decision applied
before the next and nothing leaving, by the placement code the admission loop runs. It is what a
live cluster does with the same pods created one after another, and what benchmarks/cluster.py
holds the live cluster to; unlike a fill run, nothing is shuffled or cloned."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.model.cluster import Node, Pod
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from scheduler.placement.workload import TargetWorkload


def replay(nodes: Sequence[Node], pods: Sequence[Pod], profile: str, *, seed: int = 0,
           workload: TargetWorkload | None = None) -> dict[str, str | None]:
    """Each pod's key and the node it was placed on (None: it fit nowhere). ``workload``: what
    fgd measures fragmentation against (default: the shapes of ``pods``)."""
    snap = Snapshot(list(nodes))
    placer = Placer(build_profile(profile, seed=seed, workload=workload or TargetWorkload.from_pods(pods)))
    placed: dict[str, str | None] = {}
    for pod in pods:
        decision = placer.decide(snap, pod)
        if isinstance(decision, Placement):
            snap.assign(pod, decision.node_index, decision.gpus)
            placed[pod.key] = snap.names[decision.node_index]
        else:
            placed[pod.key] = None
    return placed
