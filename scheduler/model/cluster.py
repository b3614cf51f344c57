"""Nodes and pods as plain, immutable values: what policy code reads.

Builders from Kubernetes JSON and from trace rows live beside this module; nothing here parses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from scheduler.model.resources import GPU, MILLI_PER_GPU, Resources

# Labels and annotations slotwise reads from pods and nodes.
PROJECT_LABEL = "slotwise.io/project"
KIND_LABEL = "slotwise.io/workload-kind"
PIPELINE_LABEL = "slotwise.io/pipeline"
DATASET_LABEL = "slotwise.io/dataset"
#: The deployment a serving replica belongs to (else its ReplicaSet or StatefulSet owner).
DEPLOYMENT_LABEL = "slotwise.io/deployment"
GPU_MODELS_ANNOTATION = "slotwise.io/gpu-models"
GPU_INDICES_ANNOTATION = "slotwise.io/gpu-indices"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def fluid_cache_label(namespace: str, dataset: str) -> str:
    """The label Fluid puts on nodes that hold a cache of ``namespace/dataset``."""
    return f"fluid.io/s-{namespace}-{dataset}"


class WorkloadKind(StrEnum):
    JOB = "job"
    NOTEBOOK = "notebook"
    SERVING = "serving"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: TaintEffect = TaintEffect.NO_SCHEDULE

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"  # Equal | Exists
    value: str = ""
    effect: TaintEffect | None = None  # None tolerates every effect

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes' ToleratesTaint: an empty key matches every key (with Exists, everything)."""
        if self.effect is not None and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return self.operator in ("", "Equal") and self.value == taint.value


@dataclass(frozen=True, slots=True)
class Requirement:
    """One node selector requirement: ``key operator values``.

    ``field`` requirements match node fields (only ``metadata.name`` exists) instead of labels.
    """

    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist | Gt | Lt
    values: tuple[str, ...] = ()
    field: bool = False


#: A node selector term: requirements that must all hold.
SelectorTerm = tuple[Requirement, ...]


@dataclass(frozen=True, slots=True)
class GpuDemand:
    """What a pod asks of GPUs: ``count`` devices with ``milli`` thousandths of each.

    A shared-GPU pod is ``count == 1`` with ``milli < 1000``; ``models`` (GPU product names)
    restricts which GPUs qualify, ``None`` meaning any.
    """

    count: int
    milli: int = MILLI_PER_GPU
    models: frozenset[str] | None = None

    @property
    def shared(self) -> bool:
        return self.milli < MILLI_PER_GPU

    @property
    def total_milli(self) -> int:
        return self.count * self.milli


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    allocatable: Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    gpu_model: str | None = None
    gpu_memory_mib: int = 0

    @property
    def gpu_count(self) -> int:
        return self.allocatable[GPU]


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    namespace: str = "default"
    requests: Resources = field(default_factory=Resources)
    gpu: GpuDemand | None = None
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    project: str = "default"
    kind: WorkloadKind = WorkloadKind.JOB
    priority: int = 0
    node_selector: Mapping[str, str] = field(default_factory=dict)
    #: Required node affinity: the pod fits a node that matches any one term.
    affinity: tuple[SelectorTerm, ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    pipeline: str | None = None
    #: Serving replicas of one deployment share this, so that they can be kept apart.
    deployment: str | None = None
    #: Datasets (in the pod's namespace) the pod reads; nodes caching them are preferred.
    datasets: tuple[str, ...] = ()
    #: Set for pods already bound: the node and, for GPU pods, the GPU indices they hold.
    node_name: str | None = None
    gpu_indices: tuple[int, ...] = ()
    #: PersistentVolumeClaims the pod mounts.
    claims: tuple[str, ...] = ()
    #: What ties the pod to the cluster's own machines ("hostPath volume logs", "hostNetwork",
    #: "privileged container c", "owned by a DaemonSet"): such a pod cannot run on a virtual node.
    host_ties: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def uses_gpu(self) -> bool:
        return self.gpu is not None
