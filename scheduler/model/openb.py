"""Nodes and pods from the openb GPU-cluster traces (Alibaba cluster-trace-gpu-v2023).

Node rows: ``sn, cpu_milli, memory_mib, gpu, model``. Pod rows: ``name, cpu_milli, memory_mib,
num_gpu, gpu_milli, gpu_spec, qos, pod_phase, creation_time, deletion_time, scheduled_time``
(the last six may be missing). ``gpu_milli`` is the share of each GPU; below 1000 with one GPU it
is a GPU-sharing pod; ``gpu_spec`` lists the GPU models a pod accepts, joined by ``|``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from scheduler.model.cluster import GpuDemand, Node, Pod
from scheduler.model.resources import CPU, GPU, GPU_MILLI, MEMORY, MILLI_PER_GPU, Resources

MIB = 1024 * 1024
TRACE_NAMESPACE = "openb"


class TraceError(ValueError):
    """A trace row slotwise cannot use; the message names the file line and column."""


def _int(row: Mapping[str, str], column: str, where: str) -> int:
    text = (row.get(column) or "").strip()
    try:
        value = int(text)
    except ValueError:
        raise TraceError(f"{where}: column {column!r} must be an integer, got {text!r}") from None
    if value < 0:
        raise TraceError(f"{where}: column {column!r} must not be negative, got {value}")
    return value


def node_from_row(row: Mapping[str, str], where: str = "node row") -> Node:
    gpus = _int(row, "gpu", where)
    model = (row.get("model") or "").strip() or None
    amounts = {CPU: _int(row, "cpu_milli", where), MEMORY: _int(row, "memory_mib", where) * MIB, GPU: gpus}
    return Node(name=row["sn"], allocatable=Resources(amounts), gpu_model=model if gpus else None)


def pod_from_row(row: Mapping[str, str], where: str = "pod row") -> Pod:
    num_gpu, milli = _int(row, "num_gpu", where), _int(row, "gpu_milli", where)
    spec = (row.get("gpu_spec") or "").strip()
    models = frozenset(spec.split("|")) if spec else None
    if num_gpu and not 0 < milli <= MILLI_PER_GPU:
        raise TraceError(f"{where}: gpu_milli must be in 1..1000 for a GPU pod, got {milli}")
    if num_gpu > 1 and milli != MILLI_PER_GPU:
        raise TraceError(f"{where}: a pod with several GPUs takes them whole (gpu_milli 1000), got {milli}")
    gpu = GpuDemand(num_gpu, milli, models) if num_gpu else None
    amounts = {CPU: _int(row, "cpu_milli", where), MEMORY: _int(row, "memory_mib", where) * MIB}
    if gpu is not None:
        amounts[GPU if not gpu.shared else GPU_MILLI] = num_gpu if not gpu.shared else milli
    return Pod(name=row["name"], namespace=TRACE_NAMESPACE, requests=Resources(amounts), gpu=gpu, project=TRACE_NAMESPACE)


def _rows(path: Path, required: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise TraceError(f"{path}: missing columns {', '.join(missing)}")
        return [(f"{path.name} line {i}", row) for i, row in enumerate(reader, start=2)]


def read_nodes(path: str | Path) -> list[Node]:
    return [node_from_row(row, where) for where, row in _rows(Path(path), ("sn", "cpu_milli", "memory_mib", "gpu"))]


def _optional_int(row: Mapping[str, str], column: str, where: str) -> int | None:
    return _int(row, column, where) if (row.get(column) or "").strip() else None


def read_timed_pods(path: str | Path) -> list[tuple[Pod, int | None, int | None]]:
    """Each pod with its creation and deletion time in seconds (None where the trace has none)."""
    required = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
    out = []
    for where, row in _rows(Path(path), required):
        created, deleted = _optional_int(row, "creation_time", where), _optional_int(row, "deletion_time", where)
        if created is not None and deleted is not None and deleted < created:
            raise TraceError(f"{where}: deletion_time {deleted} is before creation_time {created}")
        out.append((pod_from_row(row, where), created, deleted))
    return out


def read_pods(path: str | Path) -> list[Pod]:
    return [pod for pod, _, _ in read_timed_pods(path)]
