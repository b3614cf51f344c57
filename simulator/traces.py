"""Workload traces: pods with the time they arrive and how long they run.

Two formats are read:

- the openb CSV traces (``name, cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec, ...,
  creation_time, deletion_time``), recognised by their ``num_gpu`` column;
- slotwise's native format, CSV or JSON Lines (``.jsonl``), one pod per row, which an admin can
  produce from their own cluster (documented in ``docs/trace-format.md``):

  ``name`` (required), ``namespace``, ``project``, ``kind`` (job | notebook | serving),
  ``cpu`` and ``memory`` (Kubernetes quantities), ``gpu`` (whole GPUs) or ``gpu_milli`` (a share
  of one GPU, 1..999), ``gpu_models`` (``A100|H100``), ``pipeline``, ``deployment`` (serving
  replicas of one deployment, kept apart), ``group`` (the gang the pod belongs to, in its namespace) and ``min_members`` (how many of the group must run at once;
  empty: all), ``arrival`` (seconds from the start of the trace) and ``duration`` (seconds;
  empty: runs until the end).

Every error names the file and line.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.gang.groups import GANG_ANNOTATION, GANG_MIN_MEMBERS_ANNOTATION
from scheduler.model import openb
from scheduler.model.cluster import PIPELINE_LABEL, PROJECT_LABEL, GpuDemand, Pod, WorkloadKind
from scheduler.model.resources import CPU, GPU, GPU_MILLI, MEMORY, MILLI_PER_GPU, ResourceError, Resources, parse_amount

NATIVE_FIELDS = ("name", "namespace", "project", "kind", "cpu", "memory", "gpu", "gpu_milli", "gpu_models",
                 "pipeline", "deployment", "arrival", "duration", "group", "min_members")
#: Columns written only when some pod has a value in them.
OPTIONAL_FIELDS = ("deployment", "group", "min_members")


class TraceError(ValueError):
    """A trace row slotwise cannot use; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """A pod of a trace: when it arrives and how long it runs once started (None: unknown or
    until the end)."""

    pod: Pod
    time: float | None = None
    duration: float | None = None


def _number(value: Any, column: str, where: str, integer: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    kind = "a whole number" if integer else "a number"
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise TraceError(f"{where}: {column} must be {kind}, got {value!r}") from None
    if not math.isfinite(number) or (integer and not number.is_integer()):
        raise TraceError(f"{where}: {column} must be {kind}, got {value!r}")
    if number < 0:
        raise TraceError(f"{where}: {column} must not be negative, got {value!r}")
    return int(number) if integer else number


def arrival_from_record(record: Mapping[str, Any], where: str) -> Arrival:
    """One native-format row (CSV strings or JSON values) as an :class:`Arrival`."""
    unknown = sorted(set(record) - set(NATIVE_FIELDS))
    if unknown:
        raise TraceError(f"{where}: unknown column(s) {', '.join(unknown)}; expected {', '.join(NATIVE_FIELDS)}")
    name = str(record.get("name") or "").strip()
    if not name:
        raise TraceError(f"{where}: name is required")
    namespace = str(record.get("namespace") or "default")
    project = str(record.get("project") or namespace)
    try:
        kind = WorkloadKind(str(record.get("kind") or "job"))
    except ValueError:
        raise TraceError(f"{where}: kind must be job, notebook or serving, got {record.get('kind')!r}") from None
    amounts: dict[str, int] = {}
    for column, resource in (("cpu", CPU), ("memory", MEMORY)):
        if record.get(column) not in (None, ""):
            try:
                amounts[resource] = parse_amount(resource, record[column])
            except ResourceError as exc:
                raise TraceError(f"{where}: {exc}") from None
    gpus = int(_number(record.get("gpu"), "gpu", where, integer=True) or 0)
    milli = int(_number(record.get("gpu_milli"), "gpu_milli", where, integer=True) or 0)
    models_text = str(record.get("gpu_models") or "")
    models = frozenset(m for m in models_text.split("|") if m) or None
    if gpus and milli:
        raise TraceError(f"{where}: give gpu (whole GPUs) or gpu_milli (a share of one GPU), not both")
    if milli >= MILLI_PER_GPU:
        raise TraceError(f"{where}: gpu_milli is a share of one GPU, 1..999; use gpu for whole GPUs")
    gpu = GpuDemand(gpus) if gpus else GpuDemand(1, milli) if milli else None
    if gpu is not None:
        amounts[GPU_MILLI if gpu.shared else GPU] = milli if gpu.shared else gpus
        gpu = GpuDemand(gpu.count, gpu.milli, models)
    pipeline = str(record.get("pipeline") or "") or None
    labels = {PROJECT_LABEL: project} | ({PIPELINE_LABEL: pipeline} if pipeline else {})
    group = str(record.get("group") or "")
    min_members = _number(record.get("min_members"), "min_members", where, integer=True)
    if min_members is not None and (not group or min_members < 1):
        raise TraceError(f"{where}: min_members needs a group and must be at least 1")
    notes = ({GANG_ANNOTATION: group} if group else {}) | (
        {GANG_MIN_MEMBERS_ANNOTATION: str(min_members)} if min_members is not None else {})
    pod = Pod(name, namespace, Resources(amounts), gpu, labels=labels, annotations=notes, project=project, kind=kind,
              pipeline=pipeline, deployment=str(record.get("deployment") or "") or None)
    return Arrival(pod, _number(record.get("arrival"), "arrival", where), _number(record.get("duration"), "duration", where))


def record_of(arrival: Arrival) -> dict[str, Any]:
    """The native-format row of an arrival (the inverse of :func:`arrival_from_record`)."""
    pod, gpu = arrival.pod, arrival.pod.gpu
    return {
        "name": pod.name,
        "namespace": pod.namespace,
        "project": pod.project,
        "kind": str(pod.kind),
        "cpu": Resources({CPU: pod.requests[CPU]}).to_kubernetes().get(CPU, "0"),
        "memory": Resources({MEMORY: pod.requests[MEMORY]}).to_kubernetes().get(MEMORY, "0"),
        "gpu": gpu.count if gpu and not gpu.shared else 0,
        "gpu_milli": gpu.milli if gpu and gpu.shared else 0,
        "gpu_models": "|".join(sorted(gpu.models)) if gpu and gpu.models else "",
        "pipeline": pod.pipeline or "",
        "deployment": pod.deployment or "",
        "group": pod.annotations.get(GANG_ANNOTATION, ""),
        "min_members": int(pod.annotations.get(GANG_MIN_MEMBERS_ANNOTATION) or 0) or "",
        "arrival": arrival.time,
        "duration": arrival.duration,
    }


Located = list[tuple[str, Arrival]]


def _read_jsonl(path: Path) -> Located:
    out = []
    with path.open() as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise TraceError(f"{where}: expected a JSON object")
            out.append((where, arrival_from_record(record, where)))
    return out


def _read_native_csv(path: Path) -> Located:
    with path.open(newline="") as f:
        rows = enumerate(csv.DictReader(f), start=2)
        located = [(f"{path.name} line {i}", {k: v for k, v in row.items() if k is not None}) for i, row in rows]
    return [(where, arrival_from_record(record, where)) for where, record in located]


def _read_openb(path: Path) -> Located:
    try:
        timed = openb.read_timed_pods(path)
    except openb.TraceError as exc:
        raise TraceError(str(exc)) from None
    return [(f"{path.name} line {i}",
             Arrival(pod, None if created is None else float(created),
                     None if deleted is None or created is None else float(deleted - created)))
            for i, (pod, created, deleted) in enumerate(timed, start=2)]


def read_trace(path: str | Path) -> list[Arrival]:
    """Arrivals from an openb CSV, a native CSV or a native ``.jsonl`` file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        located = _read_jsonl(path)
    else:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        located = _read_openb(path) if "num_gpu" in header else _read_native_csv(path)
    # Pods are told apart by namespace and name, so a trace may not repeat one.
    seen: set[str] = set()
    for where, arrival in located:
        if arrival.pod.key in seen:
            raise TraceError(f"{where}: pod {arrival.pod.key} appears twice")
        seen.add(arrival.pod.key)
    return [arrival for _, arrival in located]


def write_trace(arrivals: Iterable[Arrival], path: str | Path) -> None:
    """Write arrivals in the native format (``.jsonl``, else CSV)."""
    path = Path(path)
    records = [record_of(a) for a in arrivals]
    unused = {c for c in OPTIONAL_FIELDS if not any(r[c] for r in records)}  # keep headers short
    records = [{k: v for k, v in r.items() if k not in unused} for r in records]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, [c for c in NATIVE_FIELDS if c in records[0]] if records else NATIVE_FIELDS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)
