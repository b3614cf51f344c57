"""GPU shares carried to the node by reservation pods: the webhook's ConfigMap reference, the
admission loop's groups and reservations, the reconciler's ConfigMaps, clean-up and drift, the
cache's model of it, and the reservation container's report."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonpatch
import pytest
from prometheus_client import generate_latest

from quota.store import Store
from scheduler.model.resources import CPU, GPU, MEMORY
from scheduler.model.k8s_json import pod_from_k8s
from slotwise.server.admission_loop import AdmissionLoop, Gated, Pending, Ungate
from slotwise.server.cache import ClusterCache
from slotwise.server.gpu_share_reconciler import DRIFT_REASON, ShareReconciler
from slotwise.server.gpu_shares import (
    DEVICE_ANNOTATION,
    ENV_ANNOTATION,
    GROUP_ANNOTATION,
    IDLE_RESERVATION_S,
    RESERVATION_LABEL,
    ReservationSettings,
    device_of,
    env_mutation,
    group_state,
    held_groups,
    in_share_group,
    reservation_pod,
)
from slotwise.server.metrics import ServiceMetrics
from tests.conftest import Clock
from tests.quota_fixtures import sqlite_store
from tests.test_server_admission_loop import GATE, T0, FakeKube

UUID = "GPU-8d6a2f4e-1c7b-4c1e-9a55-0f1e2d3c4b5a"


def share_json(name: str, milli: int | None = 300, *, node: str | None = None, group: str | None = None,
               slot: int = 0, gated: bool = False, sidecar: bool = False) -> dict[str, Any]:
    resources = {"requests": {"cpu": "1", "slotwise.io/gpu-milli": str(milli)},
                 "limits": {"slotwise.io/gpu-milli": str(milli)}} if milli else {"requests": {"cpu": "1"}}
    containers = [{"name": "main", "image": "x", "resources": resources}]
    if sidecar:
        containers.append({"name": "logs", "image": "y", "resources": {"requests": {"cpu": "100m"}}})
    annotations = {GROUP_ANNOTATION: group, "slotwise.io/gpu-indices": str(slot), ENV_ANNOTATION: f"env-{name}"} \
        if group else {}
    return {"metadata": {"name": name, "namespace": "nlp", "uid": f"uid-{name}", "labels": {"slotwise.io/project": "nlp"},
                         "annotations": annotations, "creationTimestamp": "2026-11-25T12:00:00Z"},
            "spec": {"containers": containers, **({"nodeName": node} if node else {}),
                     **({"schedulingGates": [{"name": GATE}]} if gated else {})},
            "status": {"phase": "Running" if node else "Pending"}}


def reservation_json(name: str, node: str, slot: int, device: str | None = UUID) -> dict[str, Any]:
    obj = reservation_pod(name, node, slot, ReservationSettings())
    if device:
        obj["metadata"]["annotations"][DEVICE_ANNOTATION] = device
    obj["metadata"]["uid"] = f"uid-{name}"
    return obj


def cache_of(*objs: dict[str, Any], gpus: int = 2) -> ClusterCache:
    cache = ClusterCache()
    cache.replace("nodes", [{"metadata": {"name": "n0", "labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}},
                             "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110",
                                                        "nvidia.com/gpu": str(gpus)}}}])
    cache.replace("pods", list(objs))
    return cache


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    with sqlite_store(tmp_path, "pools:\n- name: nlp\n  guaranteed: {cpu: 16, nvidia.com/gpu: 2}\n") as s:
        yield s


# The webhook ---------------------------------------------------------------------------------
def test_the_webhook_points_each_share_container_at_a_configmap_named_for_the_request():
    obj = share_json("a", sidecar=True)
    patch = env_mutation(obj, "705AB4F5-6393-11E8-B7CC-42010A800002")
    after = jsonpatch.apply_patch(obj, patch)
    name = "slotwise-gpu-705ab4f5-6393-11e8-b7cc-42010a800002"
    assert after["metadata"]["annotations"] == {ENV_ANNOTATION: name}
    main, sidecar = after["spec"]["containers"]
    assert main["envFrom"] == [{"configMapRef": {"name": name}}] and "envFrom" not in sidecar
    assert env_mutation(after, "another-request") == []  # reinvoked: nothing more
    assert env_mutation(share_json("whole", milli=None), "r") == []  # no share asked: untouched


def test_an_existing_env_from_list_is_appended_to():
    obj = share_json("a")
    obj["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": "creds"}}]
    after = jsonpatch.apply_patch(obj, env_mutation(obj, "r1"))
    assert after["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "creds"}},
                                                         {"configMapRef": {"name": "slotwise-gpu-r1"}}]


# The admission loop ----------------------------------------------------------------------------
def plan(store: Store, *objs: dict[str, Any], settings: ReservationSettings = ReservationSettings()) -> list[Any]:
    cache = cache_of(*objs)
    # gpu-pack puts shares on a GPU already in use, so these tests choose which shares meet on one GPU.
    loop = AdmissionLoop(cache, None, store, "gpu-pack", clock=lambda: T0, reservations=settings)  # type: ignore[arg-type]
    gated = [Gated.of(pod_from_k8s(o), o, T0) for o in objs if o["spec"].get("schedulingGates")]
    with cache.snapshot() as snap:
        return loop.plan(snap, gated, T0)


def test_shares_on_a_new_gpu_start_one_group_with_one_reservation_pod(store):
    first, second = plan(store, share_json("a", 300, gated=True), share_json("b", 500, gated=True),
                         settings=ReservationSettings("slotwise", "registry.example/slotwise:2", "holder"))
    assert isinstance(first, Ungate) and isinstance(second, Ungate)
    assert first.group == second.group == "gpu-share-uid-a"  # packed on one GPU: one group
    assert second.reservation is None
    reservation = first.reservation
    assert reservation is not None and reservation["metadata"]["name"] == first.group
    assert reservation["metadata"]["namespace"] == "slotwise" and reservation["spec"]["nodeName"] == "n0"
    assert reservation["spec"]["serviceAccountName"] == "holder"
    assert reservation["spec"]["priorityClassName"] == "slotwise-gpu-reservation"
    [container] = reservation["spec"]["containers"]
    assert container["image"] == "registry.example/slotwise:2" and container["command"] == ["slotwise", "gpu-reservation"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"  # held through the stock device plugin
    for action in (first, second):
        notes = jsonpatch.apply_patch(share_json(action.pod_key.split("/")[1], gated=True), action.patch)["metadata"][
            "annotations"]
        assert notes[GROUP_ANNOTATION] == first.group
        assert notes["slotwise.io/gpu-indices"] == reservation["metadata"]["annotations"]["slotwise.io/gpu-indices"]


def test_a_share_starts_a_group_only_where_its_reservation_pod_fits_too(store):
    """kube-scheduler counts the reservation pod's 10m and 64Mi on the node: a share that would
    take the node's last CPU and start a group there goes where the reservation fits as well."""
    whole_cpu = share_json("a", 300, gated=True)
    whole_cpu["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "16"  # what n0 has left
    busy = share_json("busy", milli=None, node="n0")
    busy["metadata"]["namespace"] = "other"
    busy["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "16"
    cache = cache_of(whole_cpu, busy)
    small = {"metadata": {"name": "n1", "labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}},
             "status": {"allocatable": {"cpu": "16100m", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "1"}}}
    cache.apply("nodes", "ADDED", small)
    loop = AdmissionLoop(cache, None, store, clock=lambda: T0)  # type: ignore[arg-type]
    with cache.snapshot() as snap:
        [ungate] = loop.plan(snap, [Gated.of(pod_from_k8s(whole_cpu), whole_cpu, T0)], T0)
    assert isinstance(ungate, Ungate) and ungate.node == "n1" and ungate.reservation is not None


def test_a_share_joins_the_group_already_holding_its_gpu(store):
    running = share_json("old", 500, node="n0", group="gpu-share-old", slot=1)
    [action] = plan(store, reservation_json("gpu-share-old", "n0", 1), running, share_json("new", 300, gated=True))
    assert isinstance(action, Ungate) and action.group == "gpu-share-old" and action.reservation is None


def test_a_share_that_does_not_fit_the_groups_gpu_takes_another(store):
    running = share_json("old", 800, node="n0", group="gpu-share-old", slot=0)
    [action] = plan(store, reservation_json("gpu-share-old", "n0", 0), running, share_json("new", 300, gated=True))
    assert isinstance(action, Ungate) and action.group == "gpu-share-uid-new" and action.reservation is not None
    assert action.reservation["metadata"]["annotations"]["slotwise.io/gpu-indices"] == "1"


def test_a_share_joins_the_group_of_a_share_ungated_before_whose_reservation_is_not_bound_yet(store):
    """Cycles follow each other faster than kube-scheduler binds: a GPU given a second group gets a
    second reservation pod, which kube-scheduler counts as a second whole GPU."""
    first = share_json("a", 300, gated=True)
    cache = cache_of(first)
    loop = AdmissionLoop(cache, FakeKube(), store, "gpu-pack", clock=lambda: T0)  # type: ignore[arg-type]
    [started] = loop.run_once()
    assert isinstance(started, Ungate) and started.reservation is not None
    cache.apply("pods", "ADDED", share_json("b", 300, gated=True))  # nothing of a's bound or lifted seen yet
    [joined] = loop.run_once()
    assert isinstance(joined, Ungate) and joined.group == started.group and joined.reservation is None


def test_a_new_groups_reservation_holds_its_room_before_the_cache_shows_it(store):
    """kube-scheduler counts the reservation pod's 10m CPU on the node from its creation on."""
    busy = share_json("busy", milli=None, node="n0")
    busy["metadata"]["namespace"] = "other"
    busy["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "16"
    cache = cache_of(share_json("a", 300, gated=True), busy)  # n0: 32 CPUs, 16 taken
    loop = AdmissionLoop(cache, FakeKube(), store, "gpu-pack", clock=lambda: T0)  # type: ignore[arg-type]
    [started] = loop.run_once()
    assert isinstance(started, Ungate) and started.reservation is not None
    last = share_json("rest", milli=None, gated=True)
    last["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "15"  # what a's 1 leaves: no room for 10m more
    cache.apply("pods", "ADDED", last)
    [waits] = loop.run_once()
    assert isinstance(waits, Pending) and waits.cause == "NoCapacity"


def test_groups_are_known_from_bound_reservations_and_bound_shares_alike():
    reservation = reservation_json("gpu-share-r", "n0", 1)
    share = share_json("s", node="n0", group="gpu-share-s", slot=0)  # its reservation not bound yet
    waiting = share_json("w", group="gpu-share-w", slot=1)  # annotated, not bound: holds no slot yet
    assert held_groups(pods(reservation, share, waiting)) == {("n0", 1): "gpu-share-r", ("n0", 0): "gpu-share-s"}


# The reconciler ----------------------------------------------------------------------------------
def reconciler() -> tuple[ShareReconciler, FakeKube, Clock, ServiceMetrics]:
    kube, clock, metrics = FakeKube(), Clock(T0), ServiceMetrics()
    return ShareReconciler(kube, metrics, clock), kube, clock, metrics  # type: ignore[arg-type]


def pods(*objs: dict[str, Any]) -> list[Any]:
    return [pod_from_k8s(o) for o in objs]


def test_a_share_gets_its_configmap_once_its_reservation_has_reported():
    shares, kube, _, _ = reconciler()
    share = share_json("a", 300, node="n0", group="g", slot=0)
    shares.reconcile(pods(reservation_json("g", "n0", 0, device=None), share))
    assert kube.calls == []  # the reservation has not said which GPU yet
    shares.reconcile(pods(reservation_json("g", "n0", 0), share))
    [(kind, key, body)] = kube.calls
    assert (kind, key) == ("configmap", "nlp/env-a")
    assert body["data"] == {"NVIDIA_VISIBLE_DEVICES": UUID, "SLOTWISE_GPU_MILLI": "300"}
    assert body["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "a", "uid": "uid-a"}]
    shares.reconcile(pods(reservation_json("g", "n0", 0), share))
    assert len(kube.calls) == 1  # written once


@pytest.mark.parametrize("status, writes", [
    (409, 1),  # after a restart: the ConfigMap there already counts as written
    (500, 2),  # a failed write is tried again next cycle
])
def test_a_configmap_is_written_until_it_exists(status, writes):
    shares, kube, _, _ = reconciler()
    kube.refuse = {"nlp/env-a": [status]}
    objs = pods(reservation_json("g", "n0", 0), share_json("a", node="n0", group="g"))
    shares.reconcile(objs)
    shares.reconcile(objs)
    assert [c[:2] for c in kube.calls] == [("configmap", "nlp/env-a")] * writes


def test_the_cache_keeps_the_pods_of_share_groups_apart_as_they_come_change_and_go():
    """The admission loop reads the groups from these every cycle, not from every pod."""
    share, reservation = share_json("a", node="n0", group="g"), reservation_json("g", "n0", 0)
    gated = share_json("b", gated=True)
    cache = cache_of(share, reservation, gated, share_json("cpu", milli=None, node="n0"))

    def shares() -> set[str]:
        assert {p.key for p in cache.share_pods()} == {p.key for p in cache.pods() if in_share_group(p)}
        return {p.key for p in cache.share_pods()}

    assert shares() == {"nlp/a", "slotwise-system/g"}
    cache.apply("pods", "MODIFIED", share_json("b", node="n0", group="g"))  # ungated into the group
    assert shares() == {"nlp/a", "nlp/b", "slotwise-system/g"}
    cache.apply("pods", "DELETED", share)
    assert shares() == {"nlp/b", "slotwise-system/g"}
    cache.replace("pods", [gated, reservation])
    assert shares() == {"slotwise-system/g"}


def test_a_reservation_no_share_uses_is_deleted_after_a_grace():
    shares, kube, clock, _ = reconciler()
    idle = pods(reservation_json("g", "n0", 0))
    shares.reconcile(idle)
    clock.now += IDLE_RESERVATION_S - 1
    shares.reconcile(idle)
    assert kube.calls == []
    clock.now += 1
    shares.reconcile(idle, used_now={"g"})  # a decision of this cycle uses it: kept, and its clock restarts
    shares.reconcile(idle)
    assert kube.calls == []
    clock.now += IDLE_RESERVATION_S
    shares.reconcile(idle)
    assert kube.calls == [("delete-pod", "slotwise-system/g", None)]


def test_drift_is_a_log_line_an_event_and_a_metric_once_per_pod_and_reason(caplog):
    shares, kube, _, metrics = reconciler()
    orphan = share_json("a", node="n0", group="gone")
    moved = share_json("b", node="n0", group="g", slot=1)
    objs = pods(reservation_json("g", "n0", 0), orphan, moved)
    shares.reconcile(objs)
    shares.reconcile(objs)
    events = [(key, body[1], body[2]) for kind, key, body in kube.calls if kind == "event"]
    assert events == [("nlp/a", DRIFT_REASON, "slotwise's view of this pod's GPU is not the node's: its GPU "
                                              "reservation gone is gone"),
                      ("nlp/b", DRIFT_REASON, "slotwise's view of this pod's GPU is not the node's: it runs on n0 "
                                              "GPU slot [1], its reservation g holds n0 slot 0")]
    assert "slotwise_gpu_share_drift_total 2.0" in generate_latest(metrics.registry).decode()
    assert sum("GPU share drift" in r.message for r in caplog.records) == 2


def test_group_state_reads_every_group_from_the_pods():
    state = group_state(pods(reservation_json("g", "n0", 0), reservation_json("idle", "n0", 1),
                             share_json("a", node="n0", group="g"), share_json("p", gated=True)))
    assert [(p.name, name, device) for p, name, device in state.env_due] == [("a", "env-a", UUID)]
    assert [r.name for r in state.idle] == ["idle"] and state.drift == ()


# The model ---------------------------------------------------------------------------------------
def test_reservations_hold_their_cpu_and_memory_and_leave_their_gpu_to_their_shares():
    """kube-scheduler counts a reservation pod's 10m CPU and 64Mi on its node: a plan that took
    them would be refused. Its GPU is the shares' (700 milli left of it)."""
    cache = cache_of(reservation_json("g", "n0", 0), share_json("a", 300, node="n0", group="g", slot=0))
    with cache.snapshot() as snap:
        assert set(snap.assignments) == {"nlp/a", "slotwise-system/g"}
        assert list(snap.gpu_free[0]) == [700, 1000]
        reservation = snap.assignments["slotwise-system/g"].pod
        assert (reservation.requests[CPU], reservation.requests[MEMORY]) == (10, 64 * 2**20)
        assert reservation.requests[GPU] == 0


def test_pods_naming_their_gpu_slots_keep_them_whatever_came_first():
    """A whole-GPU pod that names no slot may arrive before a share naming slot 0: the model is
    rebuilt with named slots first, as after a restart."""
    whole = share_json("whole", milli=None, node="n0")
    whole["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1", "nvidia.com/gpu": "1"},
                                                   "limits": {"nvidia.com/gpu": "1"}}
    cache = cache_of(whole)
    with cache.snapshot() as snap:
        assert snap.assignments["nlp/whole"].gpus == (0,)
    cache.apply("pods", "ADDED", share_json("a", 300, node="n0", group="g", slot=0))
    with cache.snapshot() as snap:
        assert snap.assignments["nlp/a"].gpus == (0,) and snap.assignments["nlp/whole"].gpus == (1,)
        assert list(snap.gpu_free[0]) == [700, 0]
    # Two pods naming the same slot beyond its room (drift): warned about, not rebuilt for.
    cache.apply("pods", "ADDED", share_json("b", 800, node="n0", group="g", slot=0))
    with cache.snapshot() as again:
        assert again is snap and "nlp/b" not in again.assignments


# The reservation container -----------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "all", "none", "void", "GPU-1,GPU-2", "/var/run/nvidia-container-devices"])
def test_a_reservation_needs_exactly_one_device(value):
    with pytest.raises(ValueError, match="exactly one GPU"):
        device_of({"NVIDIA_VISIBLE_DEVICES": value})


def test_a_reservation_reports_a_uuid_or_an_index():
    assert device_of({"NVIDIA_VISIBLE_DEVICES": UUID}) == UUID
    assert device_of({"NVIDIA_VISIBLE_DEVICES": " 3 "}) == "3"


def test_reservation_pods_are_labelled_with_their_node():
    obj = reservation_json("g", "n0", 0)
    assert obj["metadata"]["labels"][RESERVATION_LABEL] == "n0"
    assert obj["spec"]["tolerations"] == [{"operator": "Exists"}]
