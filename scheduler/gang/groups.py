"""Which pods form a gang, read from the conventions that operators already write.

Recognised, in this order (the first that names a group wins):

- slotwise's own annotations: ``slotwise.io/gang`` (name), ``slotwise.io/gang-min-members``,
  ``slotwise.io/gang-timeout`` (seconds);
- the scheduler-plugins coscheduling label ``scheduling.x-k8s.io/pod-group``: the minimum comes
  from the PodGroup's ``minMember`` (passed in as ``pod_groups``), else the pod annotation
  ``scheduling.x-k8s.io/min-member``; the timeout, where the pod has no ``slotwise.io/gang-timeout``,
  from the PodGroup's ``scheduleTimeoutSeconds``;
- Volcano's annotation ``scheduling.k8s.io/group-name`` (minimum from its own PodGroup likewise);
- the Kubeflow training operators' labels ``training.kubeflow.org/job-name`` with
  ``training.kubeflow.org/replica-type``: the gang is the job, all its replicas.

A gang with no minimum known needs every member that exists (all-or-nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scheduler.model.cluster import Pod, WorkloadKind
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass

GANG_ANNOTATION = "slotwise.io/gang"
GANG_MIN_MEMBERS_ANNOTATION = "slotwise.io/gang-min-members"
GANG_TIMEOUT_ANNOTATION = "slotwise.io/gang-timeout"
POD_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"
POD_GROUP_MIN_MEMBER_ANNOTATION = "scheduling.x-k8s.io/min-member"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
KUBEFLOW_JOB_LABEL = "training.kubeflow.org/job-name"
KUBEFLOW_REPLICA_LABEL = "training.kubeflow.org/replica-type"
SCHEDULER_PLUGINS = "scheduler-plugins"
VOLCANO = "volcano"

#: How long a gang may wait for room before it gives back what it holds, by default.
DEFAULT_TIMEOUT_S = 600.0


class GangError(ValueError):
    """A malformed gang: what the validating webhook rejects, with the pod named."""


@dataclass(frozen=True, slots=True)
class Membership:
    """What one pod says about its gang: ``key`` is ``namespace/name`` of the group."""

    key: str
    convention: str
    min_members: int | None
    timeout_s: float | None


@dataclass(frozen=True, slots=True)
class PodGroup:
    """What a PodGroup object says: its ``spec.minMember`` and (scheduler-plugins only)
    ``spec.scheduleTimeoutSeconds``; None where it sets none."""

    min_member: int | None
    timeout_s: float | None = None


#: PodGroups by the convention that names them (scheduler-plugins or Volcano: two kinds may share
#: a name) and ``namespace/name``.
PodGroups = Mapping[tuple[str, str], PodGroup]


@dataclass(frozen=True, slots=True)
class Gang:
    key: str
    members: tuple[Pod, ...]
    min_members: int
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def complete(self) -> bool:
        """Enough members exist to try placing it."""
        return len(self.members) >= self.min_members


def _positive(pod: Pod, name: str, text: str | None, cast: type[int] | type[float]) -> int | float | None:
    if text is None:
        return None
    try:
        value = cast(text)
    except ValueError:
        raise GangError(f"pod {pod.key}: {name} must be a positive number, got {text!r}") from None
    if value <= 0:
        raise GangError(f"pod {pod.key}: {name} must be a positive number, got {text!r}")
    return value


def annotation_problem(pod: Pod) -> str | None:
    """Why slotwise's own gang annotations on the pod cannot be read, or None: the validating
    webhook refuses such a pod at once, by the rule :func:`membership` applies later."""
    try:
        for name, cast in ((GANG_MIN_MEMBERS_ANNOTATION, int), (GANG_TIMEOUT_ANNOTATION, float)):
            _positive(pod, name, pod.annotations.get(name), cast)
    except GangError as exc:
        return str(exc)
    return None


def membership(pod: Pod, pod_groups: PodGroups | None = None,
               classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES) -> Membership | None:
    """The pod's gang, or None for a pod on its own (also when its workload class is not
    gang-scheduled). A PodGroup in ``pod_groups`` overrides what the pod's annotations say."""
    if not classes[pod.kind].gang:
        return None
    labels, notes = pod.labels, pod.annotations
    timeout = _positive(pod, GANG_TIMEOUT_ANNOTATION, notes.get(GANG_TIMEOUT_ANNOTATION), float)
    if GANG_ANNOTATION in notes:
        minimum = _positive(pod, GANG_MIN_MEMBERS_ANNOTATION, notes.get(GANG_MIN_MEMBERS_ANNOTATION), int)
        return Membership(f"{pod.namespace}/{notes[GANG_ANNOTATION]}", "slotwise", minimum, timeout)  # type: ignore[arg-type]
    for convention, group in ((SCHEDULER_PLUGINS, labels.get(POD_GROUP_LABEL)),
                              (VOLCANO, notes.get(VOLCANO_GROUP_ANNOTATION))):
        if group:
            key = f"{pod.namespace}/{group}"
            # Read even when the PodGroup overrides it: a malformed pod is refused whether or not
            # its PodGroup has been seen yet.
            minimum = _positive(pod, POD_GROUP_MIN_MEMBER_ANNOTATION, notes.get(POD_GROUP_MIN_MEMBER_ANNOTATION), int)
            found = (pod_groups or {}).get((convention, key))
            if found is not None:
                minimum = found.min_member if found.min_member is not None else minimum
                timeout = timeout if timeout is not None else found.timeout_s
            return Membership(key, convention, minimum, timeout)  # type: ignore[arg-type]
    if KUBEFLOW_JOB_LABEL in labels and KUBEFLOW_REPLICA_LABEL in labels:
        return Membership(f"{pod.namespace}/{labels[KUBEFLOW_JOB_LABEL]}", "kubeflow", None, timeout)
    return None


def group_gangs(pods: Iterable[Pod], pod_groups: PodGroups | None = None,
                classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES) -> tuple[list[Gang], list[Pod]]:
    """Pods gathered into gangs (in order of first member) and the pods on their own.

    Members must agree on the minimum and be in one project (one quota request covers them).
    """
    found: dict[str, list[tuple[Pod, Membership]]] = {}
    alone: list[Pod] = []
    for pod in pods:
        m = membership(pod, pod_groups, classes)
        if m is None:
            alone.append(pod)
        else:
            found.setdefault(m.key, []).append((pod, m))
    gangs = []
    for key, entries in found.items():
        minimums = {m.min_members for _, m in entries if m.min_members is not None}
        projects = {p.project for p, _ in entries}
        if len(minimums) > 1:
            raise GangError(f"gang {key}: members disagree on the minimum ({sorted(minimums)})")
        if len(projects) > 1:
            raise GangError(f"gang {key}: members are in several projects ({', '.join(sorted(projects))})")
        timeouts = [m.timeout_s for _, m in entries if m.timeout_s is not None]
        members = tuple(p for p, _ in entries)
        minimum = minimums.pop() if minimums else len(members)
        gangs.append(Gang(key, members, minimum, min(timeouts) if timeouts else DEFAULT_TIMEOUT_S))
    return gangs, alone
