"""Builders for small hand-made clusters, so that each test reads as its scenario.

Amounts are in base units: cpu in millicores, memory in bytes, GPU shares in milli-GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import hypothesis.core
import pytest
from hypothesis.vendor import pretty

from scheduler.model.cluster import GpuDemand, Node, Pod, Taint
from scheduler.model.resources import CPU, GPU, GPU_MILLI, MEMORY, MILLI_PER_GPU, PODS, Resources
from scheduler.model.snapshot import Snapshot


class Clock:
    """An injected clock the test moves by setting ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


GiB = 2**30

# The end-to-end tests import their plugin's helpers before pytest loads it as a plugin.
pytest.register_assert_rewrite("tests.e2e_cluster")

# Schemathesis' pytest plugin, loaded before this file, swaps Hypothesis' printer for one that
# prints nothing (a speed-up for its own runs on large schemas): put it back, or every falsifying
# example in this suite would be reported with its arguments left blank.
hypothesis.core.RepresentationPrinter = pretty.RepresentationPrinter  # type: ignore[misc]


def build_node(
    name: str = "n1",
    *,
    cpu: int = 32_000,
    memory: int = 128 * GiB,
    gpus: int = 0,
    model: str | None = "A100",
    pods: int = 110,
    labels: Mapping[str, str] | None = None,
    taints: Iterable[Taint] = (),
    extra: Mapping[str, int] | None = None,
) -> Node:
    """A node; ``model`` applies only when it has GPUs (pass ``model=None`` for an unlabelled GPU node)."""
    amounts = {CPU: cpu, MEMORY: memory, PODS: pods, GPU: gpus, **(extra or {})}
    return Node(name, Resources(amounts), labels=dict(labels or {}), taints=tuple(taints), gpu_model=model if gpus else None)


def build_pod(
    name: str = "p",
    *,
    cpu: int = 1000,
    memory: int = GiB,
    gpus: int = 0,
    share: int | None = None,
    models: str | Iterable[str] | None = None,
    on: str | None = None,
    at: Iterable[int] = (),
    extra: Mapping[str, int] | None = None,
    **fields,
) -> Pod:
    """A pod asking ``gpus`` whole GPUs or a ``share`` (milli) of one GPU; ``models`` like "A100|V100".

    ``on``/``at`` bind it to a node (and GPU indices), as a pod already running there.
    """
    amounts = {CPU: cpu, MEMORY: memory, **(extra or {})}
    gpu = None
    if share is not None or gpus:
        if isinstance(models, str):
            models = models.split("|")
        wanted = frozenset(models) if models is not None else None
        if share is not None and share < MILLI_PER_GPU:
            assert gpus in (0, 1), "a share is of one GPU"
            amounts[GPU_MILLI] = share
            gpu = GpuDemand(1, share, wanted)
        else:
            count = gpus or 1
            amounts[GPU] = count
            gpu = GpuDemand(count, MILLI_PER_GPU, wanted)
    return Pod(name, requests=Resources(amounts), gpu=gpu, node_name=on, gpu_indices=tuple(at), **fields)


def build_snapshot(nodes: Iterable[Node | Mapping], pods: Iterable[Pod | Mapping] = ()) -> Snapshot:
    """A snapshot from nodes and bound pods, each given as an object or as the builder's keywords
    (bound pods given as keywords are named ``bound0``, ``bound1``, ...)."""
    built_nodes = [n if isinstance(n, Node) else build_node(**n) for n in nodes]
    built_pods = [
        p if isinstance(p, Pod) else build_pod(**{"name": f"bound{i}", **p}) for i, p in enumerate(pods)
    ]
    return Snapshot(built_nodes, built_pods)


@pytest.fixture(scope="session")
def make_node():
    return build_node


@pytest.fixture(scope="session")
def make_pod():
    return build_pod


@pytest.fixture(scope="session")
def make_snapshot():
    return build_snapshot


#: The openb traces live beside the repository, never in it.
OPENB = Path(__file__).resolve().parents[2] / "shared" / "traces" / "openb"


@pytest.fixture(scope="session")
def openb() -> Path:
    if not OPENB.is_dir():
        pytest.skip(f"openb traces not found at {OPENB}")
    return OPENB
