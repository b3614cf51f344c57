"""GPU shares on nodes that run the stock NVIDIA device plugin: reservation pods, as NVIDIA's
KAI-Scheduler carries GPU fractions (docs/gpu-sharing.md says why this and not a device plugin).

A share pod asks ``slotwise.io/gpu-milli``, which no node advertises: kube-scheduler ignores it
(the extender's ``ignoredByScheduler``) and so does the kubelet (it drops extended resources the
node lacks). slotwise chooses the GPU. Each shared GPU is held by one *reservation pod* in
slotwise's namespace that asks ``nvidia.com/gpu: 1`` from the stock plugin, so the kubelet never
gives that GPU to a whole-GPU pod, and reports which device it got (its ``NVIDIA_VISIBLE_DEVICES``)
in an annotation. The share pods of that GPU (its *group*, named after the reservation) get the
same ``NVIDIA_VISIBLE_DEVICES`` from a ConfigMap of their own: the webhook adds the reference at
creation (a container's environment cannot change later), slotwise writes the ConfigMap once the
reservation has reported, owned by the pod so that it goes with it.

The model follows the objects: a share pod's GPU slot is its ``slotwise.io/gpu-indices``
annotation, the same as its reservation's, so a restart rebuilds the same state; reservations
themselves hold nothing in the model beyond their shares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from scheduler.model.cluster import GPU_INDICES_ANNOTATION, Pod
from scheduler.model.json_patch import set_entries
from scheduler.model.k8s_json import pod_from_k8s
from scheduler.model.resources import GPU, GPU_MILLI

#: On a share pod: the reservation (group) whose GPU it shares.
GROUP_ANNOTATION = "slotwise.io/gpu-group"
#: On a share pod: the ConfigMap its containers read NVIDIA_VISIBLE_DEVICES from.
ENV_ANNOTATION = "slotwise.io/gpu-env"
#: On a reservation pod: the device the NVIDIA device plugin gave it (a UUID, or an index).
DEVICE_ANNOTATION = "slotwise.io/gpu-device"
#: Labels every reservation pod, with the node it holds a GPU on as value.
RESERVATION_LABEL = "slotwise.io/gpu-reservation"
VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
#: A reservation no share pod has used for this long is deleted (watch events may bring a new
#: reservation before the share pod that names it).
IDLE_RESERVATION_S = 10.0


def _asks_share(container: Mapping[str, Any]) -> bool:
    resources = container.get("resources") or {}
    return any(GPU_MILLI in (resources.get(part) or {}) for part in ("requests", "limits"))


def env_mutation(obj: Mapping[str, Any], request_uid: str) -> list[dict[str, Any]]:
    """The JSON Patch a share pod gets at creation: each container asking a share reads its
    GPU from a ConfigMap named after the admission request (the pod may have no name yet)."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    name = annotations.get(ENV_ANNOTATION) or f"slotwise-gpu-{request_uid.lower()}"
    reference = {"configMapRef": {"name": name}}
    patch: list[dict[str, Any]] = []
    for i, container in enumerate((obj.get("spec") or {}).get("containers") or []):
        if not isinstance(container, Mapping) or not _asks_share(container):
            continue
        env_from = container.get("envFrom")
        if not env_from:
            patch.append({"op": "add", "path": f"/spec/containers/{i}/envFrom", "value": [reference]})
        elif reference not in env_from:
            patch.append({"op": "add", "path": f"/spec/containers/{i}/envFrom/-", "value": reference})
    if patch and ENV_ANNOTATION not in annotations:
        patch = set_entries(obj, ("metadata", "annotations"), {ENV_ANNOTATION: name}) + patch
    return patch


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation pod as the cache holds it."""

    name: str
    namespace: str
    node: str
    index: int
    device: str | None  # None until the pod has reported

    @classmethod
    def of(cls, pod: Pod) -> Reservation | None:
        if RESERVATION_LABEL not in pod.labels or pod.node_name is None or len(pod.gpu_indices) != 1:
            return None
        return cls(pod.name, pod.namespace, pod.node_name, pod.gpu_indices[0], pod.annotations.get(DEVICE_ANNOTATION))


def is_reservation(pod: Pod) -> bool:
    return RESERVATION_LABEL in pod.labels


def in_share_group(pod: Pod) -> bool:
    """A share placed in a group (its annotation names the group), or a reservation."""
    return GROUP_ANNOTATION in pod.annotations or is_reservation(pod)


def without_its_gpu(reservation: Pod) -> Pod:
    """A reservation pod as a snapshot holds it: its CPU and memory, which kube-scheduler counts
    on the node, and not its GPU, which the shares of its group account."""
    return replace(reservation, requests=reservation.requests.without((GPU,)), gpu=None, gpu_indices=())


def group_name(first_share_uid: str) -> str:
    """A new group's (and its reservation pod's) name: unique through its first share's uid."""
    return f"gpu-share-{first_share_uid.lower()}"


@dataclass(frozen=True, slots=True)
class ReservationSettings:
    """Where reservation pods run and as what: slotwise's namespace (out of the webhooks' reach),
    its image (which has ``slotwise gpu-reservation``) and a service account that may annotate
    its own pods."""

    namespace: str = "slotwise-system"
    image: str = "slotwise:0.1.0"
    service_account: str = "slotwise-gpu-reservation"
    #: deploy/base/priorityclass.yaml: user workloads never preempt a reservation.
    priority_class: str = "slotwise-gpu-reservation"


def reservation_pod(name: str, node: str, index: int, settings: ReservationSettings) -> dict[str, Any]:
    """The reservation pod that holds GPU slot ``index`` of ``node`` for a group of shares: bound
    by name (slotwise has decided; no scheduler pass), tolerating every taint as a DaemonSet's
    pods do, tiny, and reporting its device through ``slotwise gpu-reservation``."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": settings.namespace,
                     "labels": {RESERVATION_LABEL: node, "app.kubernetes.io/name": "slotwise-gpu-reservation"},
                     "annotations": {GPU_INDICES_ANNOTATION: str(index)}},
        "spec": {
            "nodeName": node,
            "serviceAccountName": settings.service_account,
            "priorityClassName": settings.priority_class,
            "tolerations": [{"operator": "Exists"}],
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "reservation", "image": settings.image, "command": ["slotwise", "gpu-reservation"],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi", GPU: "1"},
                              "limits": {"memory": "64Mi", GPU: "1"}},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def reservation_room(settings: ReservationSettings) -> Pod:
    """What a group's reservation pod holds on its node, as a snapshot counts it (its CPU and
    memory; the group's shares account its GPU). Named ``room``: rename it per group to place it."""
    return without_its_gpu(pod_from_k8s(reservation_pod("room", "", 0, settings)))


def env_config_map(pod: Pod, name: str, device: str) -> dict[str, Any]:
    """The ConfigMap a share pod's containers read: its reservation's device, and the share (for
    frameworks that cap their own memory by it); owned by the pod, so deleted with it."""
    milli = pod.gpu.milli if pod.gpu is not None else 0
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": pod.namespace, "labels": {"app.kubernetes.io/managed-by": "slotwise"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}]},
            "data": {VISIBLE_DEVICES: device, "SLOTWISE_GPU_MILLI": str(milli)}}


@dataclass(frozen=True, slots=True)
class GroupState:
    """What the cluster's objects say of the share groups, and where they disagree with the model."""

    #: (share pod, its ConfigMap's name, the device) for each bound share whose reservation reported.
    env_due: tuple[tuple[Pod, str, str], ...]
    #: Reservations with no share pod naming them.
    idle: tuple[Reservation, ...]
    #: Why a share pod's GPU is not what the model says: its reservation is gone, or on another
    #: node or slot (the kubelet may then give that GPU to someone else).
    drift: tuple[tuple[Pod, str], ...]


def group_state(pods: Iterable[Pod]) -> GroupState:
    """Pure: read the groups from the cached pods (reservations and shares alike)."""
    pods = [p for p in pods if in_share_group(p)]  # one pass over them all
    reservations = {r.name: r for r in map(Reservation.of, pods) if r is not None}
    used: set[str] = set()
    env_due: list[tuple[Pod, str, str]] = []
    drift: list[tuple[Pod, str]] = []
    for pod in pods:
        group = pod.annotations.get(GROUP_ANNOTATION)
        if group is None or is_reservation(pod):
            continue
        used.add(group)
        if pod.node_name is None:
            continue
        r = reservations.get(group)
        if r is None:
            drift.append((pod, f"its GPU reservation {group} is gone"))
        elif (r.node, (r.index,)) != (pod.node_name, pod.gpu_indices):
            drift.append((pod, f"it runs on {pod.node_name} GPU slot {list(pod.gpu_indices)}, its reservation "
                               f"{group} holds {r.node} slot {r.index}"))
        elif r.device is not None and ENV_ANNOTATION in pod.annotations:
            env_due.append((pod, pod.annotations[ENV_ANNOTATION], r.device))
    idle = tuple(r for name, r in reservations.items() if name not in used)
    return GroupState(tuple(env_due), idle, tuple(drift))


def held_groups(pods: Sequence[Pod]) -> dict[tuple[str, int], str]:
    """Node and GPU slot -> the share group holding it, from the cached pods: each bound
    reservation's, and each bound share's annotation. kube-scheduler binds a reservation and its
    first share in no promised order, and a GPU whose group is known from neither would be given
    a second group, whose reservation kube-scheduler then counts as a second whole GPU."""
    groups = {(p.node_name, p.gpu_indices[0]): p.annotations[GROUP_ANNOTATION] for p in pods
              if GROUP_ANNOTATION in p.annotations and p.node_name is not None and len(p.gpu_indices) == 1}
    return groups | {(r.node, r.index): r.name for r in map(Reservation.of, pods) if r is not None}


def share_annotations(group: str, gpus: Sequence[int]) -> dict[str, str]:
    return {GROUP_ANNOTATION: group, GPU_INDICES_ANNOTATION: ",".join(map(str, gpus))}


def plan_share(pod: Pod, node: str, slot: int, groups: dict[tuple[str, int], str],
               settings: ReservationSettings) -> tuple[str, dict[str, str], dict[str, Any] | None]:
    """A share placed on GPU ``slot`` of ``node``: its group, its annotations, and the reservation
    pod to create when the slot has no group yet (``groups``, node and slot to group, learns it)."""
    group = groups.get((node, slot))
    if group is not None:
        return group, share_annotations(group, [slot]), None
    group = groups[(node, slot)] = group_name(pod.uid)
    return group, share_annotations(group, [slot]), reservation_pod(group, node, slot, settings)


def device_of(environ: Mapping[str, str]) -> str:
    """The one GPU the NVIDIA device plugin gave this container, from ``NVIDIA_VISIBLE_DEVICES``
    (a UUID, or an index under ``deviceIDStrategy: index``)."""
    value = environ.get(VISIBLE_DEVICES, "").strip()
    # "all", "none" and "void" are the toolkit's keywords; a path is the volume-mounts strategy's.
    if not value or value in ("all", "none", "void") or "," in value or "/" in value:
        raise ValueError(f"{VISIBLE_DEVICES} is {value!r}: a reservation pod must be given exactly one GPU "
                         "by the NVIDIA device plugin (nvidia.com/gpu: 1, deviceListStrategy envvar)")
    return value
