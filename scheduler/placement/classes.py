"""Workload classes: how each kind of work is treated, with defaults an admin overrides.

- **job**: gang-scheduled when its pods form a group, GPU-packed;
- **notebook**: GPU-packed; a GPU notebook whose GPU stayed idle for ``idle_after_s`` is flagged;
- **serving**: replicas of one deployment spread across nodes (``replica-spread``), and spread
  rather than packed.

What the classes need not say, because it holds by construction: slotwise preempts only when a
pool's owner reclaims capacity it lent (so a notebook is never preempted otherwise, with or
without a user session), and only the kinds the burst configuration lists overflow (``kinds``,
jobs by default; serving and notebooks only when an admin adds them).

Pure: utilisation arrives as samples, time as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

from scheduler.model.cluster import WorkloadKind

@dataclass(frozen=True, slots=True)
class WorkloadClass:
    gang: bool = False  # grouped pods are admitted and placed all-or-nothing
    gpu_pack: bool = True  # GPU pods packed (gpu-pack); otherwise spread like CPU pods
    spread_replicas: bool = False  # replicas of one deployment kept on different nodes
    idle_after_s: float | None = None  # notebooks: flag a GPU idle this long
    idle_below: float = 0.05  # GPU utilisation (0..1) that counts as idle


DEFAULT_CLASSES: Mapping[WorkloadKind, WorkloadClass] = {
    WorkloadKind.JOB: WorkloadClass(gang=True),
    WorkloadKind.NOTEBOOK: WorkloadClass(idle_after_s=3600.0),
    WorkloadKind.SERVING: WorkloadClass(gpu_pack=False, spread_replicas=True),
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
