"""The admission loop: pure planning on hand-built snapshots with a SQLite quota store, and one
cycle end to end through the official client against a stub API server."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import jsonpatch
import numpy as np
import pytest
from kubernetes.client import ApiException
from urllib3.exceptions import ProtocolError
from prometheus_client import generate_latest

from burst.targets import burst_from_yaml
from quota.admission import request_for
from quota.config import config_from_yaml
from quota.store import Fenced, Store
from scheduler.gang.groups import Gang
from scheduler.gang.planner import GangPlan
from scheduler.gang.queue import GangQueue, TimedOut
from scheduler.model.k8s_json import pod_from_k8s
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from slotwise.server import admission_loop
from slotwise.server.admission_loop import (
    AdmissionLoop,
    Burst,
    Evict,
    Gated,
    Pending,
    Ungate,
)
from slotwise.server.cache import ClusterCache
from slotwise.server.kube import SCHEDULER_PLUGINS_POD_GROUPS, VOLCANO_POD_GROUPS, Kube
from slotwise.server.metrics import ServiceMetrics
from tests.conftest import build_node, build_pod, build_snapshot
from tests.quota_fixtures import sqlite_store
from tests.stub_http import StubHandler, serving

RECORDED = Path(__file__).parent / "recorded"
BURST = burst_from_yaml((Path(__file__).resolve().parents[1] / "docs" / "examples" / "burst.yaml").read_text())
GATE = "slotwise.io/admission"
T0 = datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()

#: nlp and vision share ai's 8 GPUs (vision lends 4); solo has one GPU of its own.
QUOTA = """
reclaim: {grace: 30s, min_loan: 0s}
pools:
- name: ai
  pools:
  - name: nlp
    guaranteed: {nvidia.com/gpu: 4}
    budget: {per_day: 500}
  - name: vision
    guaranteed: {nvidia.com/gpu: 4}
    shareable: {nvidia.com/gpu: 4}
- name: solo
  guaranteed: {nvidia.com/gpu: 1}
"""


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    with sqlite_store(tmp_path, QUOTA) as s:
        yield s


def pod_json(name: str, ns: str = "nlp", gpus: int = 1, gang: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                         "creationTimestamp": "2026-11-25T12:00:00Z",
                         "labels": {"slotwise.io/project": ns},
                         **({"annotations": {"slotwise.io/gang": gang}} if gang else {})},
            "spec": {"schedulingGates": [{"name": GATE}],
                     "containers": [{"name": "c", "image": "x", "resources": {"requests": {
                         "cpu": "4", "memory": "16Gi", "nvidia.com/gpu": str(gpus)}}}]}}


def gated(*objs: dict[str, Any]) -> list[Gated]:
    return [Gated.of(pod_from_k8s(o), o, T0) for o in objs]


def loop(store: Store, **kw: Any) -> AdmissionLoop:
    return AdmissionLoop(ClusterCache(), None, store, clock=lambda: T0, **kw)  # type: ignore[arg-type]  # plan needs no API


def bound(obj: dict[str, Any], node: str) -> dict[str, Any]:
    """``obj`` as the API shows it once bound to ``node`` (the gate gone)."""
    return {**obj, "spec": {**obj["spec"], "schedulingGates": [], "nodeName": node}, "status": {"phase": "Running"}}


def gang_json(name: str, gang: str, gpus: int, minimum: int | None = None, timeout: int | None = None) -> dict[str, Any]:
    obj = pod_json(name, gpus=gpus, gang=gang)
    notes = obj["metadata"]["annotations"]
    if minimum is not None:
        notes["slotwise.io/gang-min-members"] = str(minimum)
    if timeout is not None:
        notes["slotwise.io/gang-timeout"] = str(timeout)
    return obj


class FakeKube:
    """Records the loop's writes (it has no list: gated pods must come from the cache); an eviction
    or a patch answers the statuses queued for its pod in ``refuse``, then succeeds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.refuse: dict[str, list[int]] = {}

    def patch_pod(self, namespace: str, name: str, patch: list[dict[str, Any]]) -> None:
        self.calls.append(("patch", f"{namespace}/{name}", patch))
        if self.refuse.get(f"{namespace}/{name}"):
            raise ApiException(status=self.refuse[f"{namespace}/{name}"].pop(0), reason="refused")

    def evict(self, namespace: str, name: str, grace_seconds: int) -> None:
        self.calls.append(("evict", f"{namespace}/{name}", grace_seconds))
        if self.refuse.get(f"{namespace}/{name}"):
            raise ApiException(status=self.refuse[f"{namespace}/{name}"].pop(0), reason="refused")

    def create_event(self, namespace: str, name: str, uid: str, reason: str, message: str,
                     event_type: str = "Normal") -> None:
        self.calls.append(("event", f"{namespace}/{name}", (uid, reason, message, event_type)))

    def set_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> None:
        self.calls.append(("condition", f"{namespace}/{name}", condition))

    def create_pod(self, namespace: str, body: dict[str, Any]) -> None:
        self._create("pod", namespace, body)

    def delete_pod(self, namespace: str, name: str) -> None:
        self.calls.append(("delete-pod", f"{namespace}/{name}", None))

    def create_config_map(self, namespace: str, body: dict[str, Any]) -> None:
        self._create("configmap", namespace, body)

    def _create(self, kind: str, namespace: str, body: dict[str, Any]) -> None:
        key = f"{namespace}/{body['metadata']['name']}"
        self.calls.append((kind, key, body))
        if self.refuse.get(key):
            raise ApiException(status=self.refuse[key].pop(0), reason="refused")


def cache_of(*pods: dict[str, Any], gpus: tuple[int, ...] = (8,), kube: Kube | None = None) -> ClusterCache:
    """A synced cache holding ``pods`` and nodes n0, n1, ... with ``gpus`` GPUs each; with ``kube``
    (never started), one that has not listed the PodGroup kinds yet."""
    cache = ClusterCache(kube)
    cache.replace("nodes", [{"metadata": {"name": f"n{i}"}, "status": {"allocatable": {
        "cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": str(g)}}} for i, g in enumerate(gpus)])
    cache.replace("pods", list(pods))
    return cache


def node_names(doc: dict[str, Any]) -> list[list[str]]:
    terms = doc["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return [f["values"] for t in terms for f in t["matchFields"] if f["key"] == "metadata.name"]


def test_a_pod_within_quota_is_ungated_with_affinity_to_its_node(store):
    obj = pod_json("a")
    snap = build_snapshot([build_node("n1", gpus=8), build_node("n2", gpus=8)], [{"gpus": 4, "on": "n2"}])
    [action] = loop(store, placer_profile="gpu-pack").plan(snap, gated(obj), T0)
    assert isinstance(action, Ungate) and action.pod_key == "nlp/a"
    after = jsonpatch.apply_patch(obj, action.patch)
    assert after["spec"]["schedulingGates"] == []
    assert node_names(after) == [["n2"]]  # gpu-pack: the busier node
    # The GPU slot it takes (n2's fifth: four are busy) is annotated, for the model after a restart.
    assert after["metadata"]["annotations"] == {"slotwise.io/planned-nodes": "n2", "slotwise.io/gpu-indices": "4"}
    assert (store.audit()[0].action, store.audit()[0].subject) == ("admit", "nlp/a")


def test_a_pod_whose_decision_fails_waits_saying_so_while_the_others_go_on(store, monkeypatch):
    admission = loop(store)
    decide = Placer.decide

    def failing_for_bad(self, snap, pod, *args, **kw):
        if pod.name == "bad":
            raise RuntimeError("boom")
        return decide(self, snap, pod, *args, **kw)

    monkeypatch.setattr(Placer, "decide", failing_for_bad)
    snap = build_snapshot([build_node("n1", gpus=8)])
    actions = {a.pod_key: a for a in admission.plan(snap, gated(pod_json("bad"), pod_json("good")), T0)}
    assert isinstance(actions["nlp/good"], Ungate)
    bad = actions["nlp/bad"]
    assert isinstance(bad, Pending) and bad.cause == "DecisionFailed" and "RuntimeError: boom" in bad.reason


def test_a_gang_is_all_or_nothing(store):
    store.replace_config(config_from_yaml(QUOTA.replace("{nvidia.com/gpu: 4}\n    budget", "{nvidia.com/gpu: 8}\n    budget")
                                          .replace("guaranteed: {nvidia.com/gpu: 4}\n    shareable", "guaranteed: {nvidia.com/gpu: 8}\n    shareable")), "test")
    objs = [pod_json(f"w-{i}", gpus=4, gang="g") for i in range(3)]
    snap = build_snapshot([build_node("n1", gpus=4), build_node("n2", gpus=4)])  # room for two members
    actions = loop(store).plan(snap, gated(*objs), T0)
    assert {a.pod_key for a in actions} == {"nlp/w-0", "nlp/w-1", "nlp/w-2"}
    assert all(isinstance(a, Pending) and a.cause == "NoCapacity" and "gang nlp/g needs 3 members" in a.reason
               for a in actions)
    # With room for all three, each member is ungated to its own node; the plan's nodes annotated on all.
    snap = build_snapshot([build_node(f"n{i}", gpus=4) for i in range(3)])
    actions = loop(store).plan(snap, gated(*objs), T0)
    assert all(isinstance(a, Ungate) for a in actions)
    docs = [jsonpatch.apply_patch(o, a.patch) for o, a in zip(objs, actions)]
    assert sorted(n for d in docs for [[n]] in [node_names(d)]) == ["n0", "n1", "n2"]
    assert {d["metadata"]["annotations"]["slotwise.io/planned-nodes"] for d in docs} == {"n0,n1,n2"}


def test_quota_wait_leaves_the_pod_gated_with_the_reason(store):
    store.admit(request_for("solo/held", [build_pod("held", namespace="solo", project="solo", gpus=1)]), T0, "test")
    snap = build_snapshot([build_node("n1", gpus=8)])
    [action] = loop(store).plan(snap, gated(pod_json("nb", "solo")), T0)
    assert isinstance(action, Pending) and action.cause == "QuotaWait" and action.uid == "uid-nb"
    assert action.reason.startswith("project solo: needs 1 GPU, has 0 of 1 guaranteed free")


def test_reclaim_evicts_the_borrower_and_the_requester_waits_charged(store):
    borrower = build_pod("borrow-0", namespace="nlp", project="nlp", gpus=6, on="n1")
    store.admit(request_for(borrower.key, [borrower]), T0 - 600, "test")
    snap = build_snapshot([build_node("n1", gpus=8)], [borrower])
    admission = loop(store)
    actions = admission.plan(snap.copy(), gated(pod_json("t", "vision", gpus=4)), T0)
    assert actions[0] == Evict("nlp/borrow-0", 30, "", "vision/t")
    assert isinstance(actions[1], Pending) and actions[1].cause == "Reclaiming"
    assert "reclaims lent capacity from nlp/borrow-0" in actions[1].reason
    assert {w.key for w in store.ledger().charged()} == {"nlp/borrow-0", "vision/t"}
    assert [e.action for e in store.audit()][:2] == ["reclaim", "evict"]
    # Next cycle, the victim still runs: the pod still says it waits for it, not that no node fits.
    [again] = admission.plan(snap, gated(pod_json("t", "vision", gpus=4)), T0 + 5)
    assert (again.cause, again.reason) == ("Reclaiming", actions[1].reason)
    # Once it has gone, the room is there.
    [placed] = admission.plan(build_snapshot([build_node("n1", gpus=8)]), gated(pod_json("t", "vision", gpus=4)), T0 + 40)
    assert isinstance(placed, Ungate)


def test_a_reclaim_eviction_lost_to_a_crash_is_sent_again_until_the_victim_goes(store):
    """The reclaim is decided and its victim marked terminating in the database; the process
    dies before the eviction reaches the API server. The next process evicts it, and again if
    it still runs past its grace period (and a margin)."""
    borrower = bound(pod_json("borrow-0", gpus=6), "n0")
    [victim] = [pod_from_k8s(borrower)]
    store.admit(request_for(victim.key, [victim]), T0 - 600, "test")
    assert store.admit(request_for("vision/t", [pod_from_k8s(pod_json("t", "vision", gpus=4))]), T0,
                       "test").kind == "reclaim"  # decided: the eviction itself was lost
    now = [T0]
    kube = FakeKube()
    admission = AdmissionLoop(cache_of(borrower), kube, store, clock=lambda: now[0])  # type: ignore[arg-type]

    def evictions() -> list[tuple[str, Any]]:
        admission.run_once()
        out = [(key, grace) for kind, key, grace in kube.calls if kind == "evict"]
        kube.calls.clear()
        return out

    assert evictions() == [("nlp/borrow-0", 30)]
    assert evictions() == []  # sent: the victim has its grace period
    now[0] += 30 + 29
    assert evictions() == []
    now[0] += 1
    assert evictions() == [("nlp/borrow-0", 30)]  # still running past grace and margin: again


def test_a_dropped_connection_fails_one_action_not_the_rest(store):
    class Dropping(FakeKube):
        def evict(self, namespace: str, name: str, grace_seconds: int) -> None:
            super().evict(namespace, name, grace_seconds)
            if name == "v1":
                raise ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))

    kube = Dropping()
    admission = AdmissionLoop(cache_of(), kube, store, clock=lambda: T0)  # type: ignore[arg-type]
    admission.apply([Evict("nlp/v1", 30, "uid-v1"), Evict("nlp/v2", 30, "uid-v2")])
    assert [key for kind, key, _ in kube.calls if kind == "evict"] == ["nlp/v1", "nlp/v2"]


def test_work_that_waited_past_the_threshold_bursts_with_the_patch(store):
    obj = pod_json("big", gpus=1)
    snap = build_snapshot([build_node("n1", gpus=0)])  # no GPU in the cluster
    early = loop(store, burst=BURST).plan(snap, gated(obj), T0 + 600)
    assert isinstance(early[0], Pending) and "no overflow: waited 10 of 30 min" in early[0].reason
    [action] = loop(store, burst=BURST).plan(snap, gated(obj), T0 + 3600)
    assert isinstance(action, Burst)
    after = jsonpatch.apply_patch(obj, action.patch)
    assert after["spec"]["schedulingGates"] == []
    assert after["spec"]["nodeSelector"] == {"type": "virtual-kubelet"}
    assert after["metadata"]["labels"]["slotwise.io/burst-target"] == "eci-hangzhou"
    assert [e.action for e in store.audit()][:2] == ["release", "burst"]  # its quota charge went back
    assert store.budget_left("nlp", datetime.fromtimestamp(T0, UTC))[0] < 500


def test_a_burst_whose_patch_was_lost_is_patched_again_on_its_reservation(store):
    """The overflow was reserved, then the process died (or the patch failed) before the pod was
    patched: the next decision sends it on that reservation instead of refusing a second one."""
    obj = pod_json("big", gpus=1)
    snap = build_snapshot([build_node("n1", gpus=0)])
    [first] = loop(store, burst=BURST).plan(snap, gated(obj), T0 + 3600)
    assert isinstance(first, Burst)  # decided and reserved; say the patch never reached the API server
    [again] = loop(store, burst=BURST).plan(snap, gated(obj), T0 + 3700)
    assert isinstance(again, Burst) and again.patch == first.patch
    assert [s.workload for s in store.open_spend()] == ["nlp/big"]  # one reservation, not two
    assert [e.action for e in store.audit()].count("burst") == 1


def test_pods_that_may_never_overflow_are_never_patched_however_long_they_wait(store):
    """An hour gated in a cluster without GPUs, with budget left: the eligible pod bursts, and
    each pod tied to the cluster is told why it stays; none of them is patched or reserves spend."""
    tied: dict[str, tuple[dict[str, Any], str]] = {
        "hostpath": ({"volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}]}, "hostPath volume logs"),
        "hostnet": ({"hostNetwork": True}, "hostNetwork"),
        "priv": ({"initContainers": [{"name": "setup", "image": "x", "securityContext": {"privileged": True}}]},
                 "privileged container setup"),
        "daemon": ({}, "owned by a DaemonSet"),
        "notebook": ({}, "notebook work may not overflow"),
    }
    objs = [pod_json("ok")]
    for name, (spec, _) in tied.items():
        obj = pod_json(name)
        obj["spec"].update(spec)
        objs.append(obj)
    objs[4]["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u"}]
    objs[5]["metadata"]["labels"]["slotwise.io/workload-kind"] = "notebook"
    kube = FakeKube()
    admission = AdmissionLoop(cache_of(*objs, gpus=(0,)), kube, store, burst=BURST,  # type: ignore[arg-type]
                              clock=lambda: T0 + 3600)
    actions = admission.run_once()
    assert [a.pod_key for a in actions if isinstance(a, Burst)] == ["nlp/ok"]
    assert [key for kind, key, _ in kube.calls if kind == "patch"] == ["nlp/ok"]
    assert [s.workload for s in store.open_spend()] == ["nlp/ok"]
    stayed = {a.pod_key: a.reason for a in actions if isinstance(a, Pending)}
    assert sorted(stayed) == sorted(f"nlp/{name}" for name in tied)
    for name, (_, blocker) in tied.items():
        assert f"no overflow: cannot run on a virtual node: {name}: {blocker}" in stayed[f"nlp/{name}"]


def test_finished_workloads_are_released(store):
    for name in ("gone", "alive", "away"):
        pod = build_pod(name, namespace="nlp", project="nlp", gpus=1)
        store.admit(request_for(pod.key, [pod]), T0 - 600, "test")
    admission = loop(store)
    # "away" is bound to a node the cache has not seen: not in the snapshot, but not finished.
    admission.cache.replace("pods", [bound(pod_json("alive"), "n1"), bound(pod_json("away"), "elsewhere")])
    assert admission.release_finished() == ["nlp/gone"]
    assert {w.key for w in store.ledger().charged()} == {"nlp/alive", "nlp/away"}


def test_a_workload_is_released_once_its_pod_leaves_the_gang_it_was_charged_as(store):
    """Workload keys are remembered per pod object: a pod that changes (the same uid, a new object)
    is read again, so a gang whose last member became a pod of its own has no pod left."""
    for key in ("nlp/train", "nlp/a"):
        pod = build_pod(key.split("/")[1], namespace="nlp", project="nlp", gpus=1)
        store.admit(request_for(key, [pod]), T0 - 600, "test")
    admission = loop(store)
    admission.cache.replace("pods", [bound(gang_json("a", "train", 1), "n1")])
    assert admission.release_finished() == ["nlp/a"]
    admission.cache.replace("pods", [bound(pod_json("a"), "n1")])
    assert admission.release_finished() == ["nlp/train"]


def test_the_loop_reads_gated_pods_from_the_cache_and_lifts_a_gate_once(store):
    kube = FakeKube()
    cache = cache_of(pod_json("a"))
    admission = AdmissionLoop(cache, kube, store, clock=lambda: T0)  # type: ignore[arg-type]
    [ungate] = admission.run_once()
    assert isinstance(ungate, Ungate) and [c[:2] for c in kube.calls] == [("patch", "nlp/a")]
    # The watch has not brought the change yet, so the cache still shows the gate: the pod is
    # neither patched nor admitted again.
    assert admission.run_once() == [] and len(kube.calls) == 1
    assert [(e.action, e.detail.get("node")) for e in store.audit(subject="nlp/a")] == [("place", ungate.node),
                                                                                         ("admit", None)]
    cache.apply("pods", "MODIFIED", bound(pod_json("a"), "n0"))
    assert cache.gated(GATE) == [] and admission.run_once() == []


def test_room_planned_for_a_pod_not_bound_yet_is_not_planned_again(store):
    """Between the gate's removal and kube-scheduler's binding, the pod holds its planned room
    (kube-scheduler's assumed pods): a later cycle plans another pod elsewhere, not onto it."""
    kube = FakeKube()
    cache = cache_of(pod_json("a", gpus=2), gpus=(2, 2))
    admission = AdmissionLoop(cache, kube, store, clock=lambda: T0)  # type: ignore[arg-type]
    [first] = admission.run_once()
    assert isinstance(first, Ungate)
    ungated = {**pod_json("a", gpus=2)}
    ungated["spec"] = {**ungated["spec"], "schedulingGates": []}
    cache.apply("pods", "MODIFIED", ungated)  # the watch brought the gate's removal, not a binding
    cache.apply("pods", "ADDED", pod_json("b", gpus=2))
    [second] = admission.run_once()
    assert isinstance(second, Ungate) and second.node != first.node
    cache.apply("pods", "ADDED", pod_json("c", gpus=2))
    [third] = admission.run_once()  # both nodes are taken, bound or not
    assert isinstance(third, Pending) and third.cause == "NoCapacity"
    cache.apply("pods", "MODIFIED", bound(pod_json("a", gpus=2), first.node))  # bound: the cache accounts it now
    cache.apply("pods", "DELETED", pod_json("b", gpus=2))  # gone before binding: its room is free again
    cache.apply("pods", "DELETED", pod_json("c", gpus=2))
    cache.apply("pods", "ADDED", pod_json("d", gpus=2))
    [fourth] = admission.run_once()
    assert isinstance(fourth, Ungate) and fourth.node == second.node


class CountingPlacements:
    """Counts the loop's attempts to place a unit."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        place = AdmissionLoop._place

        def counted(loop: AdmissionLoop, trial: Any, unit: Any) -> Any:
            self.count += 1
            return place(loop, trial, unit)
        monkeypatch.setattr(AdmissionLoop, "_place", counted)


def test_a_pod_that_fit_nowhere_is_placed_again_only_once_room_may_have_been_freed(store, monkeypatch):
    """kube-scheduler's unschedulable queue, for the admission loop: a full cluster's backlog is not
    placed again in every cycle (two hundred such pods made each cycle seconds long at 1,213 nodes)."""
    placements = CountingPlacements(monkeypatch)
    clock = [T0]
    kube = FakeKube()
    big = bound(pod_json("big", gpus=8), "n0")
    cache = cache_of(big, pod_json("a", gpus=4))
    admission = AdmissionLoop(cache, kube, store, clock=lambda: clock[0])  # type: ignore[arg-type]
    [waits] = admission.run_once()
    assert isinstance(waits, Pending) and waits.cause == "NoCapacity" and placements.count == 1
    cache.apply("pods", "MODIFIED", {**big, "status": {"phase": "Running", "podIP": "10.0.0.1"}})  # no room freed
    assert admission.run_once() == [waits] and placements.count == 1  # told the same, not placed again
    clock[0] += admission_loop.NO_ROOM_RETRY_S
    assert admission.run_once() == [waits] and placements.count == 2  # a missed event lasts a minute at most
    cache.apply("pods", "DELETED", big)
    [placed] = admission.run_once()
    assert isinstance(placed, Ungate) and placements.count == 3


def test_room_planned_here_that_was_never_taken_counts_as_freed(store, monkeypatch):
    """A pod ungated here and deleted before kube-scheduler bound it held room in the loop's plans
    only: no watch event frees it, so the loop counts it itself."""
    placements = CountingPlacements(monkeypatch)
    kube = FakeKube()
    cache = cache_of(pod_json("a", gpus=4), gpus=(4,))
    admission = AdmissionLoop(cache, kube, store, clock=lambda: T0)  # type: ignore[arg-type]
    [ungate] = admission.run_once()
    lifted = pod_json("a", gpus=4)
    lifted["spec"]["schedulingGates"] = []
    cache.apply("pods", "MODIFIED", lifted)
    cache.apply("pods", "ADDED", pod_json("b", gpus=4))  # borrowing vision's 4: admitted, and no room
    [waits] = admission.run_once()
    assert isinstance(waits, Pending) and waits.cause == "NoCapacity"
    cache.apply("pods", "DELETED", lifted)
    [placed] = admission.run_once()
    assert isinstance(placed, Ungate) and placed.node == ungate.node and placements.count == 3


def test_room_planned_for_a_pod_whose_gate_did_not_come_off_counts_as_freed(store):
    kube = FakeKube()
    kube.refuse["nlp/a"] = [500]
    cache = cache_of(pod_json("a", gpus=4), pod_json("b", gpus=4), gpus=(4,))
    admission = AdmissionLoop(cache, kube, store, clock=lambda: T0)  # type: ignore[arg-type]
    first = admission.run_once()
    assert [type(a) for a in first] == [Ungate, Pending]  # a's patch failed; b found a's room taken
    cache.apply("pods", "DELETED", pod_json("a", gpus=4))  # gone before it was tried again
    [placed] = admission.run_once()
    assert isinstance(placed, Ungate) and placed.pod_key == "nlp/b"


class SlowKube(FakeKube):
    """Answers patches only once ``answer`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = threading.Event()

    def patch_pod(self, namespace: str, name: str, patch: list[dict[str, Any]]) -> None:
        assert self.answer.wait(10)
        super().patch_pod(namespace, name, patch)


def test_a_cycle_need_not_wait_for_its_gate_patches_and_the_next_one_decides_the_rest(store):
    kube = SlowKube()
    kube.refuse["nlp/a"] = [500]
    cache = cache_of(pod_json("a", gpus=4), gpus=(4, 4))
    admission = AdmissionLoop(cache, kube, store, clock=lambda: T0)  # type: ignore[arg-type]
    [first] = admission.run_once(wait_lifts=False)
    assert isinstance(first, Ungate) and kube.calls == []  # sent, not answered
    cache.apply("pods", "ADDED", pod_json("b", gpus=4))
    [second] = admission.run_once(wait_lifts=False)  # a is not decided twice, and its room is taken
    assert isinstance(second, Ungate) and second.pod_key == "nlp/b" and second.node != first.node
    kube.answer.set()
    started = time.monotonic()
    while not (again := admission.run_once()):  # until a's refusal is answered
        assert time.monotonic() - started < 5, "a failed patch was never taken in"
        time.sleep(0.01)
    assert [(a.pod_key, a.node) for a in again if isinstance(a, Ungate)] == [("nlp/a", first.node)]
    admission.stop()


def test_a_gated_pod_arriving_is_decided_without_waiting_out_the_interval(store):
    kube = FakeKube()
    cache = cache_of()
    admission = AdmissionLoop(cache, kube, store, clock=lambda: T0, interval_s=60, batch_s=0.05)  # type: ignore[arg-type]
    admission.start()
    try:
        time.sleep(0.2)  # the first cycle ran (nothing gated) and the loop waits
        started = time.monotonic()
        cache.apply("pods", "ADDED", pod_json("a"))
        while not kube.calls:
            assert time.monotonic() - started < 5, "the arrival did not wake the loop"
            time.sleep(0.01)
        assert kube.calls[0][:2] == ("patch", "nlp/a")
        cache.gated_arrived.clear()
        cache.apply("pods", "MODIFIED", {**pod_json("a"), "status": {"conditions": [{"type": "x"}]}})
        assert not cache.gated_arrived.is_set()  # a change to a pod already waiting is no arrival
    finally:
        stopping = time.monotonic()
        admission.stop()
    assert time.monotonic() - stopping < 1  # stop wakes the wait too


class Leadership:
    """An elector whose lease the test grants and takes away; ``lapse_after`` patches: it lapses then."""

    identity = "replica-0"

    def __init__(self, kube: FakeKube | None = None, lapse_after: int | None = None) -> None:
        self.held, self.term, self.kube, self.lapse_after = False, 0, kube, lapse_after

    def grant(self) -> None:
        self.held, self.term = True, self.term + 1

    def leading(self) -> bool:
        patches = sum(kind == "patch" for kind, _, _ in self.kube.calls) if self.kube else 0
        return self.held and (self.lapse_after is None or patches < self.lapse_after)


def test_only_the_leader_decides_and_a_new_term_takes_a_new_fencing_epoch(store):
    kube, leader = FakeKube(), Leadership()
    admission = AdmissionLoop(cache_of(pod_json("a")), kube, store, clock=lambda: T0, leader=leader)  # type: ignore[arg-type]
    assert not admission.may_decide()
    assert not [e for e in store.audit() if e.action == "lead"]
    leader.grant()
    assert admission.may_decide() and admission.may_decide()  # one epoch per term, not per cycle
    assert [e.detail for e in store.audit() if e.action == "lead"] == [{"epoch": 1}]
    # Another replica became leader meanwhile (this one was paused past its lease): its store refuses.
    store.take_leadership("replica-1")
    with pytest.raises(Fenced, match="replica-1"):
        admission.run_once()
    assert kube.calls == [] and not store.ledger().workloads


def test_a_lease_that_lapses_during_a_cycle_leaves_the_rest_of_its_actions_to_the_next_leader(store):
    kube = FakeKube()
    leader = Leadership(kube, lapse_after=1)
    leader.grant()
    admission = AdmissionLoop(cache_of(pod_json("a"), pod_json("b")), kube, store, clock=lambda: T0,  # type: ignore[arg-type]
                              leader=leader, patch_workers=1)  # one at a time: "the rest" is well defined
    assert admission.may_decide()
    assert len([a for a in admission.run_once() if isinstance(a, Ungate)]) == 2
    assert [kind for kind, _, _ in kube.calls] == ["patch"]  # the second gate stays for the next leader


def test_members_still_gated_after_a_restart_mid_gang_are_placed_on_the_standing_charge(store):
    """slotwise stopped after lifting one gate of a gang: back up, it places the other members one
    by one under the gang's charge: none left gated, nothing admitted twice."""
    members = [gang_json(f"w-{i}", "g", gpus=1) for i in range(3)]
    assert store.admit(request_for("nlp/g", [pod_from_k8s(m) for m in members]), T0, "test").kind == "admit"
    kube = FakeKube()
    cache = cache_of(bound(members[0], "n0"), *members[1:])
    actions = AdmissionLoop(cache, kube, store, clock=lambda: T0).run_once()  # type: ignore[arg-type]
    assert sorted(a.pod_key for a in actions if isinstance(a, Ungate)) == ["nlp/w-1", "nlp/w-2"]
    assert sorted(key for kind, key, _ in kube.calls if kind == "patch") == ["nlp/w-1", "nlp/w-2"]
    assert [e.action for e in store.audit(subject="nlp/g")] == ["admit"]
    assert [w.key for w in store.ledger().charged()] == ["nlp/g"]


def test_refused_evictions_are_retried_until_the_victim_goes(store):
    victims = {n: bound(pod_json(n), "n0") for n in ("v1", "v2", "v3")}
    kube = FakeKube()
    kube.refuse = {"nlp/v1": [429, 429], "nlp/v2": [429, 404], "nlp/v3": [500]}
    cache = cache_of(*victims.values())
    admission = AdmissionLoop(cache, kube, store, clock=lambda: T0)  # type: ignore[arg-type]
    admission.apply([Evict(f"nlp/{n}", 30, f"uid-{n}", "vision/t") for n in victims])
    events = [(key, detail) for kind, key, detail in kube.calls if kind == "event"]
    assert [key for key, _ in events] == ["nlp/v1", "nlp/v2"]  # refused by a PDB: told why, once
    uid, reason, message, kind = events[0][1]
    assert (uid, reason, kind) == ("uid-v1", "SlotwiseEvictionRefused", "Warning")
    assert "vision/t" in message and "PodDisruptionBudget" in message

    def evicted() -> list[str]:
        out = [key for kind, key, _ in kube.calls if kind == "evict"]
        kube.calls.clear()
        return out

    evicted()
    assert sorted(a.pod_key for a in admission.run_once()) == ["nlp/v1", "nlp/v2"]  # v3 failed otherwise: dropped
    assert evicted() == ["nlp/v1", "nlp/v2"]  # v1 refused again (not told again), v2 gone (404)
    admission.run_once()
    assert evicted() == ["nlp/v1"]  # goes through now
    admission.run_once()
    assert evicted() == []
    # A refused victim that leaves by itself, or is replaced by a namesake, is not evicted again.
    kube.refuse = {"nlp/v1": [429], "nlp/v2": [429]}
    admission.apply([Evict(f"nlp/{n}", 30, f"uid-{n}", "vision/t") for n in ("v1", "v2")])
    cache.apply("pods", "DELETED", victims["v1"])
    namesake = bound(pod_json("v2"), "n0")
    namesake["metadata"]["uid"] = "uid-v2-new"
    cache.apply("pods", "MODIFIED", namesake)
    evicted()
    admission.run_once()
    assert evicted() == []


def test_burst_spend_is_settled_for_the_time_it_ran_once_its_pods_are_gone(store):
    obj = pod_json("big")
    cache = cache_of(obj, gpus=(0,))
    now = [T0 + 3600]  # waited past the threshold, and no GPU in the cluster
    admission = AdmissionLoop(cache, FakeKube(), store, burst=BURST, clock=lambda: now[0])  # type: ignore[arg-type]
    assert [type(a) for a in admission.run_once()] == [Burst]
    [spend] = store.open_spend()
    assert (spend.workload, spend.started_at) == ("nlp/big", datetime.fromtimestamp(T0 + 3600, UTC))
    # One made before a restart, whose pods left long ago: it ran past max_runtime, capped.
    store.reserve_spend("nlp", "nlp/old", "eci-hangzhou", 10.0, datetime.fromtimestamp(T0 - 9 * 3600, UTC), "test")
    now[0] = T0 + 3600 + 1800
    assert admission.settle_bursts() == ["nlp/old"]  # big's pod still runs
    cache.apply("pods", "DELETED", obj)
    day = datetime.fromtimestamp(now[0], UTC)
    before = store.budget_left("nlp", day)
    restarted = AdmissionLoop(cache, FakeKube(), store, burst=BURST, clock=lambda: now[0])  # type: ignore[arg-type]
    restarted.run_once()
    assert store.open_spend() == []
    spent = {e.subject: e.detail["spent"] for e in store.audit() if e.action == "burst.end"}
    assert spent == {"nlp/old": 10.0, "nlp/big": pytest.approx(spend.reserved * 1800 / BURST.max_runtime_s, abs=1e-5)}
    assert store.budget_left("nlp", day)[0] == pytest.approx(before[0] + spend.reserved - spent["nlp/big"], abs=1e-5)
    restarted.run_once()  # settled once
    assert [e.action for e in store.audit()].count("burst.end") == 2


def test_a_gang_past_its_timeout_gives_up_and_its_quota_charge_goes_back(store):
    objs = [gang_json(f"w-{i}", "g", gpus=2) for i in range(2)]
    admission = loop(store)
    one_node = build_snapshot([build_node("n1", gpus=2)])  # room for one member at a time
    early = admission.plan(one_node, gated(*objs), T0 + 599)
    assert {a.cause for a in early if isinstance(a, Pending)} == {"NoCapacity"}
    assert {w.key for w in store.ledger().charged()} == {"nlp/g"}
    late = admission.plan(one_node, gated(*objs), T0 + 600)
    assert [(a.pod_key, a.cause) for a in late if isinstance(a, Pending)] == [("nlp/w-0", "GangTimedOut"),
                                                                              ("nlp/w-1", "GangTimedOut")]
    assert late[0].reason.startswith("gang nlp/g needs 2 members at once")  # why it waited
    assert "gave up after waiting 600 s (its timeout, from slotwise.io/gang-timeout or its PodGroup's " \
           "scheduleTimeoutSeconds, is 600 s)" in late[0].reason
    assert not list(store.ledger().charged())
    assert [(e.action, e.subject) for e in store.audit(limit=2)] == [("gang.timeout", "nlp/g"), ("release", "nlp/g")]
    assert store.audit(limit=1)[0].detail == {"reason": late[0].reason}
    # Given up for good: not admitted or placed again, even with room now.
    audit = len(store.audit())
    roomy = build_snapshot([build_node(f"n{i}", gpus=2) for i in range(2)])
    assert admission.plan(roomy, gated(*objs), T0 + 700) == late
    # Nor after a restart: the condition written on its pods says it gave up.
    told = {**objs[0], "status": {"conditions": [{"type": "SlotwiseAdmitted", "status": "False",
                                                  "reason": "GangTimedOut", "message": late[0].reason}]}}
    assert loop(store).plan(roomy, gated(told, objs[1]), T0 + 700) == late
    assert len(store.audit()) == audit


def test_an_incomplete_gang_times_out_as_annotated_and_its_pods_are_told_not_deleted(store):
    kube = FakeKube()
    now = [T0 + 89]
    admission = AdmissionLoop(cache_of(*[gang_json(f"w-{i}", "g", gpus=1, minimum=3, timeout=90) for i in range(2)]),
                              kube, store, clock=lambda: now[0])  # type: ignore[arg-type]
    assert {a.cause for a in admission.run_once() if isinstance(a, Pending)} == {"GangIncomplete"}
    now[0] = T0 + 90
    assert {a.cause for a in admission.run_once() if isinstance(a, Pending)} == {"GangTimedOut"}
    conditions = {key: c for kind, key, c in kube.calls if kind == "condition" and c["reason"] == "GangTimedOut"}
    assert sorted(conditions) == ["nlp/w-0", "nlp/w-1"]
    assert conditions["nlp/w-0"]["message"] == (
        "gang nlp/g: 2 of 3 members exist; gave up after waiting 90 s (its timeout, from slotwise.io/gang-timeout or "
        "its PodGroup's scheduleTimeoutSeconds, is 90 s): "
        "it holds no quota now and is not tried again; delete and recreate its pods to retry")
    calls = len(kube.calls)
    admission.run_once()
    assert len(kube.calls) == calls  # told once
    assert {kind for kind, _, _ in kube.calls} == {"event", "condition"}  # nothing patched, evicted or deleted


def test_the_gang_queue_the_loop_mirrors_gives_up_at_the_timeout_and_not_a_second_before():
    """GangQueue keeps the same timeout as the loop: a reservation whose members have not bound
    is released at exactly its timeout (60 s), a gang that cannot be placed gives up at exactly
    its own (90 s); one second earlier, neither."""
    def gang(name: str, members: int, timeout_s: float) -> Gang:
        return Gang(f"default/{name}", tuple(build_pod(f"{name}-w{k}", gpus=4) for k in range(members)), members, timeout_s)

    queue = GangQueue(Placer(build_profile("default", rng=np.random.default_rng(0))),
                      build_snapshot([build_node("n1", gpus=4)]))  # room for one 4-GPU member
    queue.submit([gang("fits", 1, 60.0), gang("big", 2, 90.0)], now=0)
    assert [(type(d), d.gang) for d in queue.schedule(now=0)] == [(GangPlan, "default/fits")]
    assert queue.schedule(now=59) == []
    assert queue.schedule(now=60) == [TimedOut("default/fits", "gang default/fits: members did not bind within 60 s",
                                               ("default/fits-w0",))]
    assert queue.schedule(now=89) == []
    [big] = queue.schedule(now=90)
    assert big.gang == "default/big" and big.reason.endswith("; gave up after 90 s") and big.released == ()


def pod_group(name: str, min_member: int, timeout: int | None = None, volcano: bool = False) -> dict[str, Any]:
    """A PodGroup object as the API lists it: scheduler-plugins' or Volcano's."""
    spec: dict[str, Any] = {"minMember": min_member}
    if timeout is not None:
        spec["scheduleTimeoutSeconds"] = timeout
    return {"apiVersion": "scheduling.volcano.sh/v1beta1" if volcano else "scheduling.x-k8s.io/v1alpha1",
            "kind": "PodGroup", "metadata": {"name": name, "namespace": "nlp"}, "spec": spec}


def grouped_json(name: str, group: str, volcano: bool = False) -> dict[str, Any]:
    """A 1-GPU pod named into ``group`` the scheduler-plugins way (label) or Volcano's (annotation)."""
    obj = pod_json(name)
    if volcano:
        obj["metadata"]["annotations"] = {"scheduling.k8s.io/group-name": group}
    else:
        obj["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] = group
    return obj


@pytest.mark.parametrize("volcano, min_member, ungated", [(False, 2, 2), (True, 2, 2), (False, 3, 0)])
def test_a_podgroups_min_member_decides_how_many_members_must_fit(store, volcano, min_member, ungated):
    kube = FakeKube()
    cache = cache_of(*[grouped_json(f"w-{i}", "pg", volcano) for i in range(3)], gpus=(1, 1))  # room for two
    own, other = (VOLCANO_POD_GROUPS, SCHEDULER_PLUGINS_POD_GROUPS) if volcano else (SCHEDULER_PLUGINS_POD_GROUPS,
                                                                                     VOLCANO_POD_GROUPS)
    cache.replace(own, [pod_group("pg", min_member, volcano=volcano)])
    cache.replace(other, [pod_group("pg", 1, volcano=not volcano)])  # the other kind's namesake: not this gang's
    actions = AdmissionLoop(cache, kube, store, clock=lambda: T0).run_once()  # type: ignore[arg-type]
    assert sum(isinstance(a, Ungate) for a in actions) == ungated
    assert {a.cause for a in actions if isinstance(a, Pending)} == {"NoCapacity"}
    if not ungated:
        assert "gang nlp/pg needs 3 members at once" in actions[0].reason


def test_a_podgroup_holds_an_incomplete_gang_for_its_schedule_timeout(store):
    kube = FakeKube()
    now = [T0 + 89]
    cache = cache_of(*[grouped_json(f"w-{i}", "pg") for i in range(2)], kube=Kube.at("http://127.0.0.1:9"))  # 2 of 3
    admission = AdmissionLoop(cache, kube, store, clock=lambda: now[0])  # type: ignore[arg-type]
    assert admission.run_once() == []  # the PodGroups are not listed yet: the gang's minimum is unknown
    cache.replace(SCHEDULER_PLUGINS_POD_GROUPS, [pod_group("pg", 3, timeout=90)])
    cache.replace(VOLCANO_POD_GROUPS, [])
    assert {a.cause for a in admission.run_once() if isinstance(a, Pending)} == {"GangIncomplete"}
    now[0] = T0 + 90
    [told, _] = admission.run_once()
    assert isinstance(told, Pending) and told.cause == "GangTimedOut"
    assert told.reason.startswith("gang nlp/pg: 2 of 3 members exist; gave up after waiting 90 s")
    assert not any(kind == "patch" for kind, _, _ in kube.calls)


# End to end -----------------------------------------------------------------------------------
class StubApiServer(StubHandler):
    """Lists nodes.json and admission-pods.json (counting lists), answers 404 for PodGroups (no
    PodGroup CRD installed), holds watches empty, records every write, and answers evictions with
    the statuses queued in ``evictions`` (then 201)."""

    protocol_version = "HTTP/1.0"
    writes: ClassVar[list[tuple[str, str, str, Any]]] = []
    lists: ClassVar[Counter[str]] = Counter()
    evictions: ClassVar[list[int]] = []

    def do_GET(self) -> None:  # http.server's name
        url = urlparse(self.path)
        if parse_qs(url.query).get("watch") == ["true"]:
            time.sleep(0.1)
            self.reply(200, b"")
            return
        kind = url.path.rsplit("/", 1)[-1]
        self.lists[kind] += 1
        if url.path.startswith("/apis/"):
            self.reply(404, (RECORDED / "crd-not-found.txt").read_bytes(), "text/plain")
            return
        self.reply(200, (RECORDED / ("nodes.json" if kind == "nodes" else "admission-pods.json")).read_bytes())

    def _write(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.writes.append((self.command, self.path, self.headers["Content-Type"], body))
        if self.path.endswith("/eviction") and self.evictions:
            status = self.evictions.pop(0)
            self.reply(status, json.dumps({"kind": "Status", "status": "Failure", "code": status}).encode())
            return
        self.reply(201 if self.command == "POST" else 200, json.dumps({"kind": "Status", "status": "Success"}).encode())

    do_POST = do_PATCH = _write



@pytest.fixture
def api() -> Iterator[str]:
    StubApiServer.writes = []
    StubApiServer.lists = Counter()
    StubApiServer.evictions = []
    with serving(StubApiServer) as url:
        yield url


@contextmanager
def following(api: str, store: Store) -> Iterator[ClusterCache]:
    """A cache synced from the stub, with the recorded borrower (6 GPUs: 2 of them vision's) admitted."""
    listed = json.loads((RECORDED / "admission-pods.json").read_text())["items"]
    borrower = pod_from_k8s(listed[0])
    store.admit(request_for(borrower.key, [borrower]), T0 - 3600, "test")
    cache = ClusterCache(Kube.at(api), watch_timeout_s=1, retry_s=0.05)
    cache.start()
    try:
        deadline = time.monotonic() + 10
        while not (cache.synced and cache.pod_groups_known):
            assert time.monotonic() < deadline, "the cache did not sync"
            time.sleep(0.02)
        yield cache
    finally:
        cache.stop()


def test_a_cycle_ungates_evicts_and_explains_through_the_api(api, store):
    listed = json.loads((RECORDED / "admission-pods.json").read_text())["items"]
    with following(api, store) as cache:
        metrics = ServiceMetrics()
        admission = AdmissionLoop(cache, Kube.at(api), store, clock=lambda: T0 + 60, metrics=metrics)
        admission.run_once()
        scraped = generate_latest(metrics.registry).decode()
        writes = list(StubApiServer.writes)
        # The stub's watch never reports the gate gone: nb-1, whose patch went through, is not
        # patched again; train-0, charged by its reclaim, is placed now; nobody is evicted or
        # told the same twice.
        admission.run_once()
    again = StubApiServer.writes[len(writes):]
    assert [(m, p) for m, p, _, _ in again] == [("PATCH", "/api/v1/namespaces/vision/pods/train-0")]
    assert StubApiServer.lists["pods"] == 1  # gated pods come from the cache, not a list per cycle
    assert StubApiServer.lists["podgroups"] == 2  # neither PodGroup CRD is installed (404): worked on without them
    by_path = {(method, path): (ctype, body) for method, path, ctype, body in writes}
    assert len(by_path) == len(writes) == 4

    ctype, ops = by_path["PATCH", "/api/v1/namespaces/solo/pods/nb-1"]
    assert ctype == "application/json-patch+json"
    assert ops[:2] == [{"op": "test", "path": "/spec/schedulingGates/1", "value": {"name": GATE}},
                       {"op": "remove", "path": "/spec/schedulingGates/1"}]
    after = jsonpatch.apply_patch(listed[2], ops)
    assert after["spec"]["schedulingGates"] == [{"name": "example.com/other"}]
    [term] = after["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"][0]["key"] == "nvidia.com/gpu.product"  # narrowed, not replaced
    assert term["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["gpu-a1"]}]
    assert after["metadata"]["annotations"] == {"owner": "ana", "slotwise.io/planned-nodes": "gpu-a1",
                                                "slotwise.io/gpu-indices": "6"}

    _, eviction = by_path["POST", "/api/v1/namespaces/nlp/pods/borrow-0/eviction"]
    assert (eviction["apiVersion"], eviction["kind"]) == ("policy/v1", "Eviction")
    assert eviction["metadata"] == {"name": "borrow-0", "namespace": "nlp"}
    assert eviction["deleteOptions"]["gracePeriodSeconds"] == 30

    _, event = by_path["POST", "/api/v1/namespaces/vision/events"]
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "train-0", "namespace": "vision",
                                       "uid": "7a0e5b20-3333-4c2d-9e4f-000000000002"}
    assert event["reason"] == "SlotwiseWaiting" and "reclaims lent capacity from nlp/borrow-0" in event["message"]

    ctype, status = by_path["PATCH", "/api/v1/namespaces/vision/pods/train-0/status"]
    assert ctype == "application/strategic-merge-patch+json"
    [condition] = status["status"]["conditions"]
    assert condition["type"] == "SlotwiseAdmitted" and condition["status"] == "False"
    assert condition["reason"] == "Reclaiming" and condition["message"] == event["message"]
    assert [(e.action, e.subject) for e in reversed(store.audit()) if e.actor == "admission-loop"] == [
        ("admit", "solo/nb-1"), ("evict", "nlp/borrow-0"), ("reclaim", "vision/train-0"), ("place", "solo/nb-1"),
        ("place", "vision/train-0")]
    assert 'slotwise_pending_pods{reason="Reclaiming"} 1.0' in scraped
    assert 'slotwise_decision_seconds_count{verb="admit"} 1.0' in scraped


def test_an_eviction_refused_through_the_api_is_retried_and_the_victim_told_once(api, store):
    StubApiServer.evictions = [429, 429]  # what the Eviction API answers while a PodDisruptionBudget forbids it
    with following(api, store) as cache:
        admission = AdmissionLoop(cache, Kube.at(api), store, clock=lambda: T0 + 60)
        for _ in range(4):
            admission.run_once()
    eviction = "/api/v1/namespaces/nlp/pods/borrow-0/eviction"
    assert [p for _, p, _, _ in StubApiServer.writes if p.endswith("/eviction")] == [eviction] * 3
    [event] = [b for _, p, _, b in StubApiServer.writes if p == "/api/v1/namespaces/nlp/events"]
    assert (event["reason"], event["type"]) == ("SlotwiseEvictionRefused", "Warning")
    assert event["involvedObject"]["uid"] == "7a0e5b20-3333-4c2d-9e4f-000000000001"
    assert "vision/train-0" in event["message"]
