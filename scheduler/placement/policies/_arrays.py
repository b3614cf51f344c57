"""Vector helpers several policies share."""

from __future__ import annotations

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.resources import CPU, MEMORY, MILLI_PER_GPU
from scheduler.model.snapshot import Snapshot


def free_fraction_after(snap: Snapshot, pod: Pod, nodes: np.ndarray, resource: str) -> np.ndarray:
    """Share of ``resource`` each node would still have free with the pod on it (0 where it has none)."""
    col = snap.column[resource]
    alloc = snap.allocatable[col, nodes]
    left = snap.free[col, nodes] - pod.requests[resource]
    return np.divide(left, alloc, out=np.zeros(len(nodes)), where=alloc > 0)


def cpu_memory_free_after(snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray:
    return (free_fraction_after(snap, pod, nodes, CPU) + free_fraction_after(snap, pod, nodes, MEMORY)) / 2


def best_fit_share(snap: Snapshot, milli: int, nodes: np.ndarray) -> np.ndarray:
    """Per node, the least free share among GPUs that still fit ``milli`` (1001 where none does)."""
    free = snap.gpu_free[nodes]
    return np.where(free >= milli, free, MILLI_PER_GPU + 1).min(axis=1)


def idle_gpu_fraction(snap: Snapshot, nodes: np.ndarray) -> np.ndarray:
    """Idle GPU milli on each node relative to the largest GPU node of the cluster."""
    if snap.gpu_capacity_max == 0:
        return np.zeros(len(nodes))
    return snap.gpu_idle[nodes] / snap.gpu_capacity_max


def sibling_spread(snap: Snapshot, pod: Pod, nodes: np.ndarray, siblings: np.ndarray) -> np.ndarray:
    """Keep siblings apart: a node with none always beats one with some, fewer beat more, and
    among equals the less loaded node wins."""
    free = np.clip(cpu_memory_free_after(snap, pod, nodes), 0.0, 1.0)
    return np.where(siblings == 0, 60 + 40 * free, 40 * free / np.maximum(siblings, 1))
