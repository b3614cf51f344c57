"""The live service places MIG pods on the instances node agents report: layouts posted to
``/mig/nodes/{node}`` steer the extender, the admission loop and the ``slotwise_mig_slices_free``
gauge through one fleet, rebuilt when a report changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mig.catalog import MODELS
from mig.geometry import Layout
from mig.report import NodeReport, node_report
from mig.store import MemoryLayoutStore, ReportedFleet
from quota.store import Store
from scheduler.model.k8s_json import pod_from_k8s
from slotwise.server.admission_loop import AdmissionLoop, Gated, Pending, Ungate
from slotwise.server.app import create_app
from slotwise.server.cache import ClusterCache
from tests.quota_fixtures import serve_in_subprocess, sqlite_store
from tests.test_server_admission_loop import GATE, T0

A100 = MODELS["A100-80GB"]
PRODUCT = "NVIDIA-A100-SXM4-80GB"
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCRAPE_TOKEN = "prometheus-" + "s" * 32
THREE_G = "nvidia.com/mig-3g.40gb"


def report(node: str, *gpus: list[tuple[str, int, bool]]) -> NodeReport:
    """A node's report: per GPU, its instances as (profile, start, in use)."""
    layouts = [Layout.of(A100, (Layout.parse(A100, [(p, s)], in_use=u).instances[0] for p, s, u in g)) for g in gpus]
    return node_report(node, [PRODUCT] * len(layouts), layouts)


#: mig-free: one idle 3g beside a busy one; mig-full: both 3g busy; mig-silent: no agent has reported.
FREE = report("mig-free", [("3g.40gb", 0, True), ("3g.40gb", 4, False)])
FULL = report("mig-full", [("3g.40gb", 0, True), ("3g.40gb", 4, True)])
NODES = ["mig-free", "mig-full", "mig-silent"]


def node_json(name: str) -> dict[str, Any]:
    """A MIG node as the device plugin's mixed strategy advertises it: two 3g instances, by count."""
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.product": PRODUCT}},
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110", THREE_G: "2"}}}


def mig_pod(name: str, gated: bool = False, gang: str | None = None) -> dict[str, Any]:
    asks = {"cpu": "1", THREE_G: "1"}
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"requests": asks, "limits": asks}}]}
    if gated:
        spec["schedulingGates"] = [{"name": GATE}]
    return {"metadata": {"name": name, "namespace": "nlp", "uid": f"uid-{name}", "labels": {"slotwise.io/project": "nlp"},
                         "creationTimestamp": "2026-11-25T12:00:00Z", "annotations": {"slotwise.io/gang": gang} if gang else {}},
            "spec": spec, "status": {"phase": "Pending"}}


def cpu_pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "nlp", "uid": f"uid-{name}"},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": "Pending"}}


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    with sqlite_store(tmp_path, "pools:\n- name: nlp\n  guaranteed: {cpu: 16, nvidia.com/mig-3g.40gb: 4}\n") as s:
        yield s


def cache_of(*pods: dict[str, Any]) -> ClusterCache:
    cache = ClusterCache()
    cache.replace("nodes", [node_json(n) for n in NODES])
    cache.replace("pods", list(pods))
    return cache


@pytest.fixture
def service(store) -> tuple[TestClient, ReportedFleet]:
    """The app as ``slotwise serve --mig-token-file`` builds it, with mig-free and mig-full reported over HTTP."""
    fleet = ReportedFleet(MemoryLayoutStore())
    client = TestClient(create_app(store, cache=cache_of(), mig_token=TOKEN, mig_fleet=fleet))
    for body in (FREE, FULL):
        assert client.post(f"/mig/nodes/{body.node}", json=body.model_dump(), headers=AUTH).status_code == 204
    return client, fleet


def test_filter_keeps_a_node_with_a_free_slot_and_fails_a_full_one_as_a_shortage(service):
    client, _ = service
    reply = client.post("/extender/filter", json={"Pod": mig_pod("m"), "NodeNames": NODES}).json()
    assert reply["NodeNames"] == ["mig-free"]
    # Counts alone (two 3g advertised, none bound) would keep all three.
    assert reply["FailedNodes"] == {"mig-full": "no free valid MIG slot for 3g.40gb",
                                    "mig-silent": "no MIG layout reported for the node"}
    assert reply["FailedAndUnresolvableNodes"] == {}
    scores = {h["Host"]: h["Score"] for h in client.post("/extender/prioritize", json={
        "Pod": mig_pod("m"), "NodeNames": ["mig-free", "mig-full"]}).json()}
    assert scores["mig-free"] > scores["mig-full"]


def test_a_new_report_changes_the_answer_and_pods_without_mig_are_unaffected(service):
    client, fleet = service
    first = fleet()
    assert fleet() is first  # nothing changed: not rebuilt
    assert client.post("/mig/nodes/mig-full", json=FULL.model_dump(), headers=AUTH).status_code == 204
    assert fleet() is first  # the agent's periodic, identical report changes nothing
    freed = report("mig-full", [("3g.40gb", 0, True), ("3g.40gb", 4, False)])
    client.post("/mig/nodes/mig-full", json=freed.model_dump(), headers=AUTH)
    assert fleet() is not first
    reply = client.post("/extender/filter", json={"Pod": mig_pod("m"), "NodeNames": NODES}).json()
    assert reply["NodeNames"] == ["mig-free", "mig-full"]
    plain = client.post("/extender/filter", json={"Pod": cpu_pod("c"), "NodeNames": NODES}).json()
    assert plain["NodeNames"] == NODES and plain["FailedNodes"] == {}


def test_preempt_agrees_where_evicting_a_pod_frees_an_instance_of_the_profile(store):
    victim = {**mig_pod("old"), "spec": {**mig_pod("old")["spec"], "nodeName": "mig-full"},
              "status": {"phase": "Running"}}
    fleet = ReportedFleet(MemoryLayoutStore())
    fleet.store.put(FULL)
    client = TestClient(create_app(store, cache=cache_of(victim), mig_token=TOKEN, mig_fleet=fleet))
    proposed = {"mig-full": {"Pods": [{"UID": "uid-old"}], "NumPDBViolations": 0}}
    reply = client.post("/extender/preempt", json={"Pod": mig_pod("m"), "NodeNameToMetaVictims": proposed}).json()
    assert reply == {"NodeNameToMetaVictims": proposed}
    nobody = {"mig-full": {"Pods": [], "NumPDBViolations": 0}}
    assert client.post("/extender/preempt", json={"Pod": mig_pod("m"), "NodeNameToMetaVictims": nobody}).json() == {
        "NodeNameToMetaVictims": {}}
    assert fleet().placeable()["3g.40gb"] == 0  # the trial never touched the live fleet


def samples(text: str, name: str) -> dict[str, float]:
    return {s.labels["profile"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name}


def test_the_gauge_counts_instances_placeable_now_at_each_scrape(store):
    client = TestClient(create_app(store, mig_token=TOKEN, metrics_token=SCRAPE_TOKEN))
    client.headers["Authorization"] = f"Bearer {SCRAPE_TOKEN}"  # /metrics; the reports send AUTH
    assert samples(client.get("/metrics").text, "slotwise_mig_slices_free") == {}
    mixed = report("mig-a", [("3g.40gb", 0, True), ("3g.40gb", 4, False)],
                   [("2g.20gb", 0, False), ("2g.20gb", 2, True), ("2g.20gb", 4, False), ("1g.10gb", 6, False)],
                   [])
    client.post("/mig/nodes/mig-a", json=mixed.model_dump(), headers=AUTH)
    client.post("/mig/nodes/mig-b", json=FREE.model_dump() | {"node": "mig-b"}, headers=AUTH)
    free = samples(client.get("/metrics").text, "slotwise_mig_slices_free")
    # Idle instances only (mig-manager's fixed layouts): the empty GPU offers nothing until repartitioned.
    assert free == {"3g.40gb": 2, "2g.20gb": 2, "1g.10gb": 1, "1g.10gb+me": 0, "1g.20gb": 0, "4g.40gb": 0, "7g.80gb": 0}
    client.post("/mig/nodes/mig-b", json=FULL.model_dump() | {"node": "mig-b"}, headers=AUTH)
    assert samples(client.get("/metrics").text, "slotwise_mig_slices_free")["3g.40gb"] == 1


def plan(store: Store, *objs: dict[str, Any], reports: tuple[NodeReport, ...] = (FREE, FULL)
         ) -> tuple[dict[str, Any], ReportedFleet]:
    """One admission cycle's actions by pod key, with ``reports`` (mig-free and mig-full) reported."""
    fleet = ReportedFleet(MemoryLayoutStore())
    for body in reports:
        fleet.store.put(body)
    cache = cache_of(*objs)
    loop = AdmissionLoop(cache, None, store, clock=lambda: T0, mig=fleet)  # type: ignore[arg-type]  # plan needs no API
    with cache.snapshot() as snap:
        actions = loop.plan(snap, [Gated.of(pod_from_k8s(o), o, T0) for o in objs], T0)
    return {a.pod_key: a for a in actions}, fleet


def test_the_loop_never_gives_one_instance_twice_and_tells_a_pod_without_one_why(store):
    by_pod, fleet = plan(store, mig_pod("m1", gated=True), mig_pod("m2", gated=True))
    assert isinstance(by_pod["nlp/m1"], Ungate)
    assert {"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["mig-free"]}]}]}}}} in by_pod["nlp/m1"].patch
    # Counts allow two 3g on mig-free; its one idle instance went to m1.
    waiting = by_pod["nlp/m2"]
    assert isinstance(waiting, Pending) and waiting.cause == "NoMigSlot"
    assert "no node has a free MIG instance of 3g.40gb" in waiting.reason and "slotwise mig plan" in waiting.reason
    assert fleet().placeable()["3g.40gb"] == 1  # the cycle's trial never touched the live fleet


def test_before_any_agent_reports_a_mig_pod_waits_saying_so(store):
    """Right after a restart no layout is known yet: the pod waits, and the cycle goes on."""
    cpu = cpu_pod("c")
    cpu["spec"]["schedulingGates"] = [{"name": GATE}]
    by_pod, _ = plan(store, mig_pod("m", gated=True), cpu, reports=())
    assert isinstance(by_pod["nlp/m"], Pending) and by_pod["nlp/m"].cause == "NoMigSlot"
    assert isinstance(by_pod["nlp/c"], Ungate)


def test_a_gang_wanting_one_node_s_last_instance_twice_waits_whole(store):
    by_pod, _ = plan(store, mig_pod("g1", gated=True, gang="job"), mig_pod("g2", gated=True, gang="job"))
    assert all(isinstance(a, Pending) and a.cause == "NoMigSlot" for a in by_pod.values()) and len(by_pod) == 2
    assert "no free 3g.40gb instance left on mig-free" in by_pod["nlp/g1"].reason


def test_serve_with_a_mig_token_file_acts_on_reports(tmp_path, store):
    """``slotwise serve`` as an admin starts it: a report posted over HTTP steers filter and the gauge."""
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "metrics-token").write_text(SCRAPE_TOKEN)
    (tmp_path / "nodes.json").write_text(json.dumps({"items": [node_json(n) for n in NODES]}))
    with serve_in_subprocess(str(store.engine.url), "--nodes", str(tmp_path / "nodes.json"),
                             "--mig-token-file", str(tmp_path / "token"),
                             "--metrics-token-file", str(tmp_path / "metrics-token")) as base, \
            httpx.Client(base_url=base, timeout=10) as http:
        assert http.post("/mig/nodes/mig-free", json=FREE.model_dump(), headers=AUTH).status_code == 204
        reply = http.post("/extender/filter", json={"Pod": mig_pod("m"), "NodeNames": NODES}).json()
        assert reply["NodeNames"] == ["mig-free"]
        scraped = http.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}).text
        assert samples(scraped, "slotwise_mig_slices_free")["3g.40gb"] == 1
