"""Synthetic clusters and workloads, so that slotwise runs with no data file at all.

The cluster mixes 8-GPU A100 nodes, 4-GPU A10 nodes, 2-GPU T4 nodes and CPU-only nodes across
racks and zones. The workload mixes the platform's three kinds of work: training jobs (CPU-only,
one GPU to eight, some of them steps of a pipeline), notebooks (a share of a GPU, or CPU-only)
and serving replicas (a share of a GPU or a whole one). Everything comes from the given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.model.cluster import GPU_PRODUCT_LABEL, PIPELINE_LABEL, PROJECT_LABEL, GpuDemand, Node, Pod, WorkloadKind
from scheduler.model.resources import CPU, GPU, GPU_MILLI, MEMORY, PODS, Resources

GIB = 1024**3
PROJECTS = ("nlp", "vision", "speech", "recsys")
ZONE_LABEL = "topology.kubernetes.io/zone"
RACK_LABEL = "slotwise.io/rack"


@dataclass(frozen=True, slots=True)
class NodeType:
    prefix: str
    count: int
    cpu_cores: int
    memory_gib: int
    gpus: int = 0
    gpu_model: str | None = None


DEFAULT_NODE_TYPES = (
    NodeType("a100", 8, 96, 1024, 8, "A100-SXM4-80GB"),
    NodeType("a10", 12, 48, 384, 4, "A10"),
    NodeType("t4", 16, 32, 192, 2, "T4"),
    NodeType("cpu", 12, 64, 256),
)


def synthetic_cluster(node_types: tuple[NodeType, ...] = DEFAULT_NODE_TYPES, nodes_per_rack: int = 8) -> list[Node]:
    nodes: list[Node] = []
    for t in node_types:
        for i in range(t.count):
            rack = len(nodes) // nodes_per_rack
            labels = {ZONE_LABEL: f"zone-{rack % 2}", RACK_LABEL: f"rack-{rack}"}
            amounts = {CPU: t.cpu_cores * 1000, MEMORY: t.memory_gib * GIB, PODS: 110, GPU: t.gpus}
            if t.gpu_model:
                labels[GPU_PRODUCT_LABEL] = t.gpu_model
            nodes.append(Node(f"{t.prefix}-{i:03d}", Resources(amounts), labels, gpu_model=t.gpu_model))
    return nodes


def _pod(name: str, kind: WorkloadKind, project: str, cpu: int, memory_gib: int, gpu: GpuDemand | None,
         pipeline: str | None = None) -> Pod:
    amounts = {CPU: cpu * 1000, MEMORY: memory_gib * GIB}
    if gpu is not None:
        amounts[GPU_MILLI if gpu.shared else GPU] = gpu.milli if gpu.shared else gpu.count
    labels = {PROJECT_LABEL: project} | ({PIPELINE_LABEL: pipeline} if pipeline else {})
    return Pod(name, project, Resources(amounts), gpu, labels=labels, project=project, kind=kind, pipeline=pipeline)


def synthetic_workload(count: int, seed: int = 0) -> list[Pod]:
    """``count`` pods in arrival order: about half jobs, a third notebooks, the rest serving."""
    rng = np.random.default_rng(seed)
    pods: list[Pod] = []
    while len(pods) < count:
        n = len(pods)
        project = PROJECTS[int(rng.integers(len(PROJECTS)))]
        roll = rng.random()
        if roll < 0.5:
            gpus = int(rng.choice([0, 1, 1, 1, 2, 4, 8]))
            if gpus == 0 and rng.random() < 0.5:
                # A three-step CPU pipeline whose steps should not share a machine.
                pods += [_pod(f"pipe-{n:05d}-s{k}", WorkloadKind.JOB, project, 8, 32, None, f"pipe-{n:05d}") for k in range(3)]
                continue
            demand = GpuDemand(gpus) if gpus else None
            pods.append(_pod(f"job-{n:05d}", WorkloadKind.JOB, project, max(4, 8 * gpus), max(16, 64 * gpus), demand))
        elif roll < 0.83:
            share = int(rng.choice([0, 250, 500, 500]))
            pods.append(_pod(f"nb-{n:05d}", WorkloadKind.NOTEBOOK, project, 2, 8, GpuDemand(1, share) if share else None))
        else:
            demand = GpuDemand(1, int(rng.choice([300, 500, 1000])))
            pods.append(_pod(f"serve-{n:05d}", WorkloadKind.SERVING, project, 4, 16, demand))
    return pods[:count]
