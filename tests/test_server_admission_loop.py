"""The admission loop: pure planning on hand-built snapshots with a SQLite quota store, and one
cycle end to end through the official client against a stub API server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import jsonpatch
import pytest
from prometheus_client import generate_latest

from burst.targets import burst_from_yaml
from quota.admission import request_for
from quota.config import config_from_yaml
from quota.store import Store
from scheduler.model.k8s_json import pod_from_k8s
from scheduler.server.admission_loop import (
    AdmissionLoop,
    Burst,
    Evict,
    Gated,
    Pending,
    Ungate,
)
from scheduler.server.cache import ClusterCache
from scheduler.server.kube import Kube
from scheduler.server.metrics import ServiceMetrics
from tests.conftest import build_node, build_pod, build_snapshot

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
    s = Store(f"sqlite:///{tmp_path / 'quota.db'}")
    s.migrate()
    s.replace_config(config_from_yaml(QUOTA), "test")
    yield s
    s.close()


def pod_json(name: str, ns: str = "nlp", gpus: int = 1, gang: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                         "creationTimestamp": "2026-11-25T12:00:00Z",
                         "labels": {"slotwise.io/project": ns},
                         **({"annotations": {"slotwise.io/gang": gang}} if gang else {})},
            "spec": {"schedulingGates": [{"name": GATE}],
                     "containers": [{"name": "c", "image": "x", "resources": {"requests": {
                         "cpu": "4", "memory": "16Gi", "nvidia.com/gpu": str(gpus)}}}]}}


def gated(*objs: dict[str, Any]) -> list[Gated]:
    return [g for o in objs if (g := Gated.read(o, T0)) is not None]


def loop(store: Store, **kw: Any) -> AdmissionLoop:
    return AdmissionLoop(ClusterCache(), None, store, clock=lambda: T0, **kw)  # type: ignore[arg-type]  # plan needs no API


def node_names(doc: dict[str, Any]) -> list[list[str]]:
    terms = doc["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return [f["values"] for t in terms for f in t["matchFields"] if f["key"] == "metadata.name"]


def test_a_pod_within_quota_is_ungated_with_affinity_to_its_node(store):
    obj = pod_json("a")
    snap = build_snapshot([build_node("n1", gpus=8), build_node("n2", gpus=8)], [{"gpus": 4, "on": "n2"}])
    [action] = loop(store).plan(snap, gated(obj), T0)
    assert isinstance(action, Ungate) and action.pod_key == "nlp/a"
    after = jsonpatch.apply_patch(obj, action.patch)
    assert after["spec"]["schedulingGates"] == []
    assert node_names(after) == [["n2"]]  # gpu-pack: the busier node
    assert after["metadata"]["annotations"] == {"slotwise.io/planned-nodes": "n2"}
    assert (store.audit()[0].action, store.audit()[0].subject) == ("admit", "nlp/a")


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
    actions = loop(store).plan(snap, gated(pod_json("t", "vision", gpus=4)), T0)
    assert actions[0] == Evict("nlp/borrow-0", 30)
    assert isinstance(actions[1], Pending) and actions[1].cause == "Reclaiming"
    assert "reclaims lent capacity from nlp/borrow-0" in actions[1].reason
    assert {w.key for w in store.ledger().charged()} == {"nlp/borrow-0", "vision/t"}
    assert [e.action for e in store.audit()][:2] == ["reclaim", "evict"]


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


def test_finished_workloads_are_released(store):
    for name in ("gone", "alive"):
        pod = build_pod(name, namespace="nlp", project="nlp", gpus=1)
        store.admit(request_for(pod.key, [pod]), T0 - 600, "test")
    snap = build_snapshot([build_node("n1", gpus=8)], [build_pod("alive", namespace="nlp", project="nlp", gpus=1, on="n1")])
    assert loop(store).release_finished(snap) == ["nlp/gone"]
    assert {w.key for w in store.ledger().charged()} == {"nlp/alive"}


# End to end -----------------------------------------------------------------------------------
class StubApiServer(BaseHTTPRequestHandler):
    """Lists nodes.json and admission-pods.json (the unbound ones for a spec.nodeName= field
    selector), holds watches empty, and records every write."""

    protocol_version = "HTTP/1.0"
    writes: ClassVar[list[tuple[str, str, str, Any]]] = []

    def do_GET(self) -> None:  # http.server's name
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if query.get("watch") == ["true"]:
            time.sleep(0.1)
            self._send(200, b"")
            return
        kind = url.path.rsplit("/", 1)[-1]
        body = json.loads((RECORDED / ("nodes.json" if kind == "nodes" else "admission-pods.json")).read_text())
        if "spec.nodeName=" in query.get("fieldSelector", [""])[0]:
            body["items"] = [p for p in body["items"] if not p["spec"].get("nodeName")]
        self._send(200, json.dumps(body).encode())

    def _write(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.writes.append((self.command, self.path, self.headers["Content-Type"], body))
        self._send(201 if self.command == "POST" else 200, json.dumps({"kind": "Status", "status": "Success"}).encode())

    do_POST = do_PATCH = _write

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    StubApiServer.writes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_cycle_ungates_evicts_and_explains_through_the_api(api, store):
    kube = Kube.at(api)
    listed = json.loads((RECORDED / "admission-pods.json").read_text())["items"]
    borrower = pod_from_k8s(listed[0])
    store.admit(request_for(borrower.key, [borrower]), T0 - 3600, "test")  # 6 GPUs: 2 borrowed from vision
    cache = ClusterCache(kube, watch_timeout_s=1, retry_s=0.05)
    cache.start()
    try:
        deadline = time.monotonic() + 10
        while not cache.synced:
            assert time.monotonic() < deadline, "the cache did not sync"
            time.sleep(0.02)
        metrics = ServiceMetrics()
        admission = AdmissionLoop(cache, kube, store, clock=lambda: T0 + 60, metrics=metrics)
        admission.run_once()
        scraped = generate_latest(metrics.registry).decode()
        writes = list(StubApiServer.writes)
        # The stub still lists both pods gated, as if the patches had failed: the admitted are
        # planned again (the gate comes off), but nobody is evicted or told the same twice.
        admission.run_once()
    finally:
        cache.stop()
    again = StubApiServer.writes[len(writes):]
    assert sorted((m, p) for m, p, _, _ in again) == [("PATCH", "/api/v1/namespaces/solo/pods/nb-1"),
                                                      ("PATCH", "/api/v1/namespaces/vision/pods/train-0")]
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
    assert after["metadata"]["annotations"] == {"owner": "ana", "slotwise.io/planned-nodes": "gpu-a1"}

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
    assert {(e.action, e.subject) for e in store.audit(limit=3)} == {
        ("admit", "solo/nb-1"), ("reclaim", "vision/train-0"), ("evict", "nlp/borrow-0")}
    assert 'slotwise_pending_pods{reason="Reclaiming"} 1.0' in scraped
    assert 'slotwise_decision_seconds_count{verb="admit"} 1.0' in scraped
