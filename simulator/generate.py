"""Synthetic clusters and workloads, so that slotwise runs with no data file at all.

The cluster mixes 8-GPU A100 nodes, 4-GPU A10 nodes, 2-GPU T4 nodes and CPU-only nodes across
racks and zones. The workload mixes the platform's three kinds of work: training jobs, notebooks
and serving replicas, arriving over time with how long each runs. Everything comes from the
given seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from scheduler.gang.groups import GANG_ANNOTATION, GANG_MIN_MEMBERS_ANNOTATION
from scheduler.model.cluster import GPU_PRODUCT_LABEL, PIPELINE_LABEL, PROJECT_LABEL, GpuDemand, Node, Pod, WorkloadKind
from scheduler.model.resources import CPU, GPU, GPU_MILLI, MEMORY, PODS, Resources
from simulator.traces import Arrival

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
         pipeline: str | None = None, gang: tuple[str, int] | None = None) -> Pod:
    amounts = {CPU: cpu * 1000, MEMORY: memory_gib * GIB}
    if gpu is not None:
        amounts[GPU_MILLI if gpu.shared else GPU] = gpu.milli if gpu.shared else gpu.count
    labels = {PROJECT_LABEL: project} | ({PIPELINE_LABEL: pipeline} if pipeline else {})
    notes = {GANG_ANNOTATION: gang[0], GANG_MIN_MEMBERS_ANNOTATION: str(gang[1])} if gang else {}
    return Pod(name, project, Resources(amounts), gpu, labels=labels, annotations=notes, project=project, kind=kind,
               pipeline=pipeline)


def synthetic_arrivals(count: int, seed: int = 0, mean_gap_s: float = 300.0) -> list[Arrival]:
    """``count`` pods arriving as a Poisson stream (``mean_gap_s`` between submissions): half
    of the submissions are training jobs (CPU pipelines of three steps, one to eight GPUs,
    multi-worker jobs: gangs of two 8-GPU workers) running a log-normal time around an hour; 35% are
    notebooks (a GPU share or CPU-only) living 2 to 24 hours; 15% are serving deployments (two
    to four replicas on a share or a whole GPU) up for half a day to three days."""
    rng = np.random.default_rng(seed)
    out: list[Arrival] = []
    now = 0.0
    while len(out) < count:
        n = len(out)
        now += float(rng.exponential(mean_gap_s))
        project = PROJECTS[int(rng.integers(len(PROJECTS)))]
        roll = rng.random()
        if roll < 0.5:
            duration = float(np.round(rng.lognormal(np.log(3600), 1.0)))
            gpus = int(rng.choice([0, 1, 1, 1, 2, 4, 8, 16]))
            if gpus == 0 and rng.random() < 0.5:
                # A three-step CPU pipeline whose steps should not share a machine.
                name = f"pipe-{n:05d}"
                pods = [_pod(f"{name}-s{k}", WorkloadKind.JOB, project, 8, 32, None, name) for k in range(3)]
            elif gpus > 8:
                # A multi-worker job: a gang of whole 8-GPU workers, useless unless all run.
                gang = (f"job-{n:05d}", gpus // 8)
                pods = [_pod(f"job-{n:05d}-w{k}", WorkloadKind.JOB, project, 64, 512, GpuDemand(8), gang=gang)
                        for k in range(gpus // 8)]
            else:
                demand = GpuDemand(gpus) if gpus else None
                pods = [_pod(f"job-{n:05d}", WorkloadKind.JOB, project, max(4, 8 * gpus), max(16, 64 * gpus), demand)]
            out += [Arrival(pod, now, duration) for pod in pods]
        elif roll < 0.85:
            share = int(rng.choice([0, 250, 500, 500]))
            duration = float(np.round(rng.uniform(2, 24) * 3600))
            pod = _pod(f"nb-{n:05d}", WorkloadKind.NOTEBOOK, project, 2, 8, GpuDemand(1, share) if share else None)
            out.append(Arrival(pod, now, duration))
        else:
            demand = GpuDemand(1, int(rng.choice([300, 500, 1000])))
            replicas = int(rng.integers(2, 5))
            duration = float(np.round(rng.uniform(0.5, 3) * 86400))
            out += [Arrival(replace(_pod(f"serve-{n:05d}-r{k}", WorkloadKind.SERVING, project, 4, 16, demand),
                                    deployment=f"serve-{n:05d}"), now, duration) for k in range(replicas)]
    return out[:count]


def gang_burst_arrivals(gangs: int = 6, workers: int = 4, duration_s: float = 3600.0, gap_s: float = 1.0) -> list[Arrival]:
    """``gangs`` training jobs of ``workers`` 8-GPU workers each, submitted together with their
    members interleaved (as several operators creating pods at once do): on the synthetic
    cluster's eight A100 nodes, a scheduler that places members one by one gives every gang some
    workers and none all of them."""
    out = []
    for k in range(workers):
        for g in range(gangs):
            name, project = f"train-{g:02d}", PROJECTS[g % len(PROJECTS)]
            pod = _pod(f"{name}-w{k}", WorkloadKind.JOB, project, 64, 512, GpuDemand(8), gang=(name, workers))
            out.append(Arrival(pod, (k * gangs + g) * gap_s, duration_s))
    return out


def synthetic_workload(count: int, seed: int = 0) -> list[Pod]:
    """The pods of :func:`synthetic_arrivals`, in arrival order."""
    return [a.pod for a in synthetic_arrivals(count, seed)]
