"""What a cluster holds, in quota units: the capacity the ledger's root pool is given."""

from __future__ import annotations

from collections.abc import Iterable

from scheduler.model.cluster import Node
from scheduler.model.resources import GPU, MILLI_PER_GPU, Resources, gpu_quota_resource


def cluster_capacity(nodes: Iterable[Node]) -> Resources:
    """Allocatable summed over nodes, GPUs as milli-GPU in total and per GPU model."""
    total = Resources()
    for node in nodes:
        total = total + node.allocatable.without((GPU,))
        gpus = node.gpu_count * MILLI_PER_GPU
        total = total + {GPU: gpus} + ({gpu_quota_resource(node.gpu_model): gpus} if node.gpu_model else {})
    return total
