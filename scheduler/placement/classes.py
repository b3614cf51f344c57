"""Workload classes: how each kind of work is treated, with defaults an admin overrides.

- **job**: gang-scheduled when its pods form a group, GPU-packed;
- **notebook**: GPU-packed (idle GPU notebooks are flagged from utilisation by
  :func:`slotwise.server.utilisation.idle_pods`);
- **serving**: replicas of one deployment spread across nodes (``replica-spread``), and spread
  rather than packed.

What the classes need not say, because it holds by construction: slotwise preempts only when a
pool's owner reclaims capacity it lent (so a notebook is never preempted otherwise, with or
without a user session), and only the kinds the burst configuration lists overflow (``kinds``,
jobs by default; serving and notebooks only when an admin adds them).

"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import yaml

from scheduler.model.cluster import WorkloadKind
from scheduler.model.safe_yaml import load_yaml


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    gang: bool = False  # grouped pods are admitted and placed all-or-nothing
    gpu_pack: bool = True  # GPU pods packed (gpu-pack); otherwise spread like CPU pods
    spread_replicas: bool = False  # replicas of one deployment kept on different nodes


DEFAULT_CLASSES: Mapping[WorkloadKind, WorkloadClass] = {
    WorkloadKind.JOB: WorkloadClass(gang=True),
    WorkloadKind.NOTEBOOK: WorkloadClass(),
    WorkloadKind.SERVING: WorkloadClass(gpu_pack=False, spread_replicas=True),
}


class ClassConfigError(ValueError):
    """An override naming an unknown kind or field, or a value of the wrong type."""


def classes_from_yaml(text: str) -> dict[WorkloadKind, WorkloadClass]:
    """Overrides from a YAML file such as ``serving: {gpu_pack: true}``."""
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise ClassConfigError(f"not valid YAML: {exc}") from None
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise ClassConfigError("expected kinds mapped to settings, e.g. serving: {gpu_pack: true}")
    return classes_from_mapping(data)


def classes_from_mapping(overrides: Mapping[str, Mapping[str, object]]) -> dict[WorkloadKind, WorkloadClass]:
    """The defaults with an admin's overrides, e.g. ``{"serving": {"gpu_pack": True}}`` (from YAML)."""
    out = dict(DEFAULT_CLASSES)
    known = [f.name for f in fields(WorkloadClass)]
    for kind_name, changes in overrides.items():
        try:
            kind = WorkloadKind(kind_name)
        except ValueError:
            raise ClassConfigError(f"unknown workload class {kind_name!r}; expected job, notebook or serving") from None
        for name, value in changes.items():
            if name not in known:
                raise ClassConfigError(f"{kind_name}: unknown setting {name!r}; expected {', '.join(known)}")
            if not isinstance(value, bool):
                raise ClassConfigError(f"{kind_name}.{name}: expected true or false, got {value!r}")
        out[kind] = replace(out[kind], **changes)  # type: ignore[arg-type]
    return out
