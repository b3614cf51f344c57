"""GPU shares and the group each GPU's shares form. A share that starts a group brings the
group's reservation pod to the node (it holds the GPU for the group; kube-scheduler counts its CPU
and memory there), so such a share fits only where that pod fits beside it. The admission loop
and the simulator's replay both place shares through here, so that they agree."""

from __future__ import annotations

from collections.abc import Container

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Decision, Placement
from scheduler.placement.engine import Placer


def starts_group(pod: Pod, decision: Placement, grouped: Container[tuple[str, int]]) -> bool:
    """Whether ``pod`` is a share placed on a GPU slot (node, index) that has no group yet."""
    return pod.gpu is not None and pod.gpu.shared and (decision.node, decision.gpus[0]) not in grouped


def _room_beside(snap: Snapshot, pod: Pod, decision: Placement, room: Pod) -> bool:
    try:
        snap.assign(pod, decision.node_index, decision.gpus)
        snap.assign(room, decision.node_index)
        return True
    except ValueError:
        return False
    finally:
        for key in (pod.key, room.key):
            if key in snap.assignments:
                snap.release(key)


def decide(placer: Placer, snap: Snapshot, pod: Pod, grouped: Container[tuple[str, int]], room: Pod) -> Decision:
    """``placer``'s decision for ``pod``, passing over each node where the pod would start a group
    without room for ``room`` (a reservation pod's CPU and memory, without its GPU) beside it."""
    decision = placer.decide(snap, pod)
    among = np.arange(len(snap))
    while (isinstance(decision, Placement) and starts_group(pod, decision, grouped)
           and not _room_beside(snap, pod, decision, room)):
        among = among[among != decision.node_index]
        decision = placer.decide(snap, pod, among)
    return decision
