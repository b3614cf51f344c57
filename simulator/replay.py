"""Replay: pods placed in the order given, onto nodes in the order given, each decision applied
before the next and nothing leaving, by the placement code the admission loop runs. It is what a
live cluster does with the same pods created one after another, and what benchmarks/cluster.py
holds the live cluster to; unlike a fill run, nothing is shuffled or cloned."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from scheduler.model.cluster import Node, Pod
from scheduler.model.snapshot import Snapshot
from scheduler.placement import share_groups
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from scheduler.placement.workload import TargetWorkload


def replay(nodes: Sequence[Node], pods: Sequence[Pod], profile: str, *, group_room: Pod, seed: int = 0,
           workload: TargetWorkload | None = None) -> dict[str, str | None]:
    """Each pod's key and the node it was placed on (None: it fit nowhere). ``group_room``: what
    the first share on a GPU brings to its node beside it, as the live cluster's reservation pod
    (its CPU and memory). ``workload``: what fgd measures fragmentation against (default: the
    shapes of ``pods``)."""
    snap = Snapshot(list(nodes))
    placer = Placer(build_profile(profile, seed=seed, workload=workload or TargetWorkload.from_pods(pods)))
    grouped: set[tuple[str, int]] = set()
    placed: dict[str, str | None] = {}
    for pod in pods:
        decision = share_groups.decide(placer, snap, pod, grouped, group_room)
        if isinstance(decision, Placement):
            snap.assign(pod, decision.node_index, decision.gpus)
            if share_groups.starts_group(pod, decision, grouped):
                grouped.add((decision.node, decision.gpus[0]))
                snap.assign(replace(group_room, name=f"{group_room.name}-{len(grouped)}"), decision.node_index)
            placed[pod.key] = snap.names[decision.node_index]
        else:
            placed[pod.key] = None
    return placed
