"""Workload classes: what each kind of work may have done to it, with defaults an admin overrides.

- **job**: gang-scheduled when its pods form a group, GPU-packed, preemptible, may burst;
- **notebook**: never preempted while its user's session is active, unless the pool owner
  reclaims; a GPU notebook whose GPU stayed idle for ``idle_after_s`` is flagged;
- **serving**: replicas of one deployment spread across nodes, never burst unless allowed.

Pure: utilisation arrives as samples, the session state and time as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from scheduler.model.cluster import Pod, WorkloadKind
from scheduler.model.snapshot import Snapshot

#: Label naming the deployment a serving replica belongs to.
DEPLOYMENT_LABEL = "slotwise.io/deployment"


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    gang: bool = False  # grouped pods are admitted and placed all-or-nothing
    gpu_pack: bool = True
    preemptible: bool = True
    spread_replicas: bool = False
    burst: bool = True
    idle_after_s: float | None = None  # notebooks: flag a GPU idle this long
    idle_below: float = 0.05  # GPU utilisation (0..1) that counts as idle


DEFAULT_CLASSES: Mapping[WorkloadKind, WorkloadClass] = {
    WorkloadKind.JOB: WorkloadClass(gang=True),
    WorkloadKind.NOTEBOOK: WorkloadClass(preemptible=False, idle_after_s=3600.0),
    WorkloadKind.SERVING: WorkloadClass(gpu_pack=False, preemptible=False, spread_replicas=True, burst=False),
}


class ClassConfigError(ValueError):
    """An override naming an unknown kind or field, or a value of the wrong type."""


def classes_from_mapping(overrides: Mapping[str, Mapping[str, object]]) -> dict[WorkloadKind, WorkloadClass]:
    """The defaults with an admin's overrides, e.g. ``{"serving": {"burst": True}}`` (from YAML)."""
    out = dict(DEFAULT_CLASSES)
    known = {f.name: f.type for f in fields(WorkloadClass)}
    for kind_name, changes in overrides.items():
        try:
            kind = WorkloadKind(kind_name)
        except ValueError:
            raise ClassConfigError(f"unknown workload class {kind_name!r}; expected job, notebook or serving") from None
        for name, value in changes.items():
            if name not in known:
                raise ClassConfigError(f"{kind_name}: unknown setting {name!r}; expected {', '.join(known)}")
            flag = known[name] == "bool"
            if flag != isinstance(value, bool) or (not flag and value is not None and not isinstance(value, int | float)):
                raise ClassConfigError(f"{kind_name}.{name}: expected {'true or false' if flag else 'a number'}, got {value!r}")
        out[kind] = replace(out[kind], **changes)  # type: ignore[arg-type]
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str


def may_preempt(victim: Pod, classes: Mapping[WorkloadKind, WorkloadClass], *, session_active: bool,
                by_pool_owner: bool) -> Verdict:
    """Whether ``victim`` may be evicted: a notebook with an active session only by its pool's
    owner reclaiming; other non-preemptible classes never."""
    if classes[victim.kind].preemptible:
        return Verdict(True, f"{victim.kind} pods are preemptible")
    if victim.kind == WorkloadKind.NOTEBOOK and (by_pool_owner or not session_active):
        why = "the pool owner reclaims" if by_pool_owner else "no user session is active"
        return Verdict(True, f"notebook {victim.key}: {why}")
    return Verdict(False, f"{victim.kind} {victim.key} is not preempted" +
                   (" while its user session is active" if victim.kind == WorkloadKind.NOTEBOOK else ""))


def may_burst(pod: Pod, classes: Mapping[WorkloadKind, WorkloadClass]) -> Verdict:
    allowed = classes[pod.kind].burst
    return Verdict(allowed, f"{pod.kind} pods {'may' if allowed else 'never'} burst to virtual nodes")


@dataclass(frozen=True, slots=True)
class IdleNotebook:
    pod: str
    idle_since: float
    reason: str


def idle_notebooks(samples: Mapping[str, Sequence[tuple[float, float]]], now: float,
                   classes: Mapping[WorkloadKind, WorkloadClass]) -> list[IdleNotebook]:
    """GPU notebooks (pod key -> (time, GPU utilisation 0..1) samples, e.g. DCGM via Prometheus)
    whose GPU stayed below the idle threshold for the whole window. A window the samples do not
    cover is not judged: missing data is not idleness."""
    policy = classes[WorkloadKind.NOTEBOOK]
    if policy.idle_after_s is None:
        return []
    since = now - policy.idle_after_s
    out = []
    for pod, series in sorted(samples.items()):
        window = [(t, u) for t, u in series if since <= t <= now]
        if not window or min(t for t, _ in window) > since + 0.1 * policy.idle_after_s:
            continue
        if max(u for _, u in window) < policy.idle_below:
            busy = [t for t, u in series if t < since and u >= policy.idle_below]
            start = max(busy) if busy else min(t for t, _ in series)
            out.append(IdleNotebook(pod, start, f"notebook {pod}: GPU below {policy.idle_below:.0%} "
                                    f"for {(now - start) / 3600:.1f} h"))
    return out


def replica_spread_scores(snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray | None:
    """Serving replicas of one deployment apart: 100 on nodes with none of its replicas, less
    the more they hold. None for pods with no deployment (no opinion)."""
    deployment = pod.labels.get(DEPLOYMENT_LABEL)
    if deployment is None:
        return None
    counts = np.zeros(len(snap), dtype=np.int64)
    for a in snap.assignments.values():
        if a.pod.labels.get(DEPLOYMENT_LABEL) == deployment and a.pod.namespace == pod.namespace:
            counts[a.node] += 1
    return 100.0 / (1 + counts[nodes])
