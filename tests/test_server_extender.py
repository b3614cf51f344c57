"""The extender's four verbs, exactly as kube-scheduler (extender v1, nodeCacheCapable) calls them."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slotwise.server.cache import ClusterCache
from slotwise.server.extender import MAX_BODY_BYTES, MAX_UNKNOWN_NODES, Extender, _Recent, extender_router
from tests.quota_fixtures import serve_in_thread

RECORDED = Path(__file__).parent / "recorded"
A100 = "A100-SXM4-80GB"
ALL = ["gpu-a1", "gpu-a2", "gpu-b1", "infra-1"]


class FakeKube:
    def __init__(self, error: Exception | None = None):
        self.error = error
        self.bound: list[tuple[str, str, str, str]] = []

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        if self.error is not None:
            raise self.error
        self.bound.append((namespace, name, uid, node))


def recorded_cache(kube=None) -> ClusterCache:
    cache = ClusterCache(kube)
    for kind in ("nodes", "pods"):
        cache.replace(kind, json.loads((RECORDED / f"{kind}.json").read_text())["items"])
    return cache


def client_for(cache: ClusterCache, profile: str = "default") -> TestClient:
    app = FastAPI()
    app.include_router(extender_router(cache, profile))
    return TestClient(app)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return client_for(recorded_cache())


def gang_pod(gpus: int = 2, annotations: dict[str, str] | None = None) -> dict:
    """The reference's example pod: what kube-scheduler puts under ``Pod``."""
    return {"metadata": {"name": "w-0", "namespace": "team-a", "uid": "6f1c0d2e-0000-0000-0000-000000000001",
                         "labels": {"scheduling.x-k8s.io/pod-group": "job42"}, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "m", "image": "x",
                                     "resources": {"requests": {"cpu": "8", "nvidia.com/gpu": str(gpus)},
                                                   "limits": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": "Pending"}}


def test_filter_splits_shortages_from_what_preemption_cannot_fix(client):
    pod = gang_pod(annotations={"slotwise.io/gpu-models": A100})
    reply = client.post("/extender/filter", json={"Pod": pod, "Nodes": None, "NodeNames": [*ALL, "new-node"]})
    assert reply.status_code == 200
    assert reply.json() == {
        "Nodes": None,
        "NodeNames": ["gpu-a1"],  # 4 of 8 GPUs free; done-1 has Succeeded and holds nothing
        "FailedNodes": {"gpu-a2": "Insufficient nvidia.com/gpu", "new-node": "node not in slotwise's cache yet"},
        "FailedAndUnresolvableNodes": {"gpu-b1": f"GPU model not {A100}",
                                       "infra-1": "node(s) had untolerated taint {dedicated: infra}"},
        "Error": "",
    }


def test_filter_keeps_a_planned_gang_member_on_its_plan_and_never_adds_names(client):
    pod = gang_pod(annotations={"slotwise.io/planned-nodes": "gpu-b1, gpu-zz"})
    reply = client.post("/extender/filter", json={"Pod": pod, "NodeNames": ["gpu-a1", "gpu-b1"]}).json()
    assert reply["NodeNames"] == ["gpu-b1"]
    assert reply["FailedAndUnresolvableNodes"] == {"gpu-a1": "node not in the pod's gang placement plan"}


def test_prioritize_scales_the_profile_to_max_extender_priority():
    reply = client_for(recorded_cache(), "gpu-pack").post("/extender/prioritize", json={"Pod": gang_pod(), "NodeNames": ["gpu-b1", "gpu-a1", "nope"]})
    assert reply.status_code == 200
    scores = {h["Host"]: h["Score"] for h in reply.json()}
    assert set(scores) == {"gpu-a1", "gpu-b1"}  # unknown names are left out, i.e. 0
    assert all(isinstance(s, int) and 0 <= s <= 10 for s in scores.values())
    assert scores["gpu-a1"] > scores["gpu-b1"]  # GPU work is packed onto the half-used node


def test_bind_creates_the_binding_through_the_adapter_and_reports_failures():
    args = {"PodName": "w-0", "PodNamespace": "team-a", "PodUID": "6f1c0d2e-0000-0000-0000-000000000001", "Node": "gpu-a1"}
    kube = FakeKube()
    assert client_for(recorded_cache(kube)).post("/extender/bind", json=args).json() == {"Error": ""}
    assert kube.bound == [("team-a", "w-0", "6f1c0d2e-0000-0000-0000-000000000001", "gpu-a1")]
    failing = client_for(recorded_cache(FakeKube(RuntimeError("pods \"w-0\" not found"))))
    assert "not found" in failing.post("/extender/bind", json=args).json()["Error"]


def test_preempt_keeps_only_nodes_where_the_victims_make_room(client):
    victims = {"gpu-a2": {"Pods": [{"UID": "5d2c7a10-2222-4b1f-8c3e-000000000001"}], "NumPDBViolations": 0},
               "infra-1": {"Pods": [], "NumPDBViolations": 0},
               "gpu-b1": {"Pods": [{"UID": "unknown-uid"}], "NumPDBViolations": 1}}
    reply = client.post("/extender/preempt", json={"Pod": gang_pod(4), "NodeNameToVictims": None,
                                                   "NodeNameToMetaVictims": victims})
    assert reply.status_code == 200
    # gpu-a2: evicting the 7-GPU job frees 8; infra-1 has a taint and no GPU; gpu-b1 fits 4 T4s.
    assert reply.json() == {"NodeNameToMetaVictims": {"gpu-a2": victims["gpu-a2"], "gpu-b1": victims["gpu-b1"]}}
    too_few = {"gpu-a2": {"Pods": [], "NumPDBViolations": 0}}
    assert client.post("/extender/preempt", json={"Pod": gang_pod(4), "NodeNameToMetaVictims": too_few}).json() == {
        "NodeNameToMetaVictims": {}}


@pytest.mark.parametrize(("body", "status", "says"), [
    (b'{"Pod": {"metadata": {"name": "w-0"}}, "NodeNames": ["gpu-a', 400, "not JSON"),
    (b'[1, 2, 3]', 400, "expected a JSON object"),
    (b'{"Pod": "w-0", "NodeNames": []}', 400, "Pod: expected dict"),
    (b'{"Pod": {"metadata": {"name": "w"}}, "NodeNames": [1]}', 400, "NodeNames: expected a string for every node"),
    (b'{"Pod": {"metadata": {}}, "NodeNames": []}', 400, "metadata.name"),
    (b'[' * 100_000 + b']' * 100_000, 400, "JSON"),  # too deep to parse, or parsed and not an object: either way 400
])
def test_malformed_requests_get_a_4xx_that_says_why(client, body, status, says):
    reply = client.post("/extender/filter", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == status
    assert says in reply.json()["detail"]


def test_a_body_is_cut_at_its_own_node_names_only(client):
    """Bodies ending like Go's ExtenderArgs are cut where ``,"NodeNames":`` starts, without parsing
    the names; a cut that is not at the top level must not change what the body says."""
    pod = gang_pod(1)
    go = client.post("/extender/filter", content=json.dumps({"Pod": pod, "Nodes": None, "NodeNames": ALL},
                                                               separators=(",", ":")))
    assert go.json()["NodeNames"] == ["gpu-a1", "gpu-a2", "gpu-b1"]
    # The key inside the Pod, and no NodeNames at the top: no names were sent.
    body = json.dumps({"Pod": {**pod, "NodeNames": ALL}}, separators=(",", ":")).encode()
    assert body.endswith(b']}}')
    assert client.post("/extender/filter", content=body).json()["NodeNames"] == []
    # Cut at the top level, but what comes before is no object member: not JSON.
    broken = client.post("/extender/filter", content=b'{,"NodeNames":["gpu-a1"]}')
    assert broken.status_code == 400 and "not JSON" in broken.json()["detail"]
    # Names that are not all strings are refused whichever way the body is read (cut, or whole).
    for separators in ((",", ":"), (", ", ": ")):
        mixed = client.post("/extender/filter",
                            content=json.dumps({"Pod": pod, "NodeNames": ["gpu-a1", 7]}, separators=separators))
        assert mixed.status_code == 400 and "expected a string for every node" in mixed.json()["detail"]


def test_the_node_list_sent_every_cycle_stays_remembered():
    """Each cycle looks up the same node list and adds the names filter kept: the list, used every
    cycle, must outlive any number of kept lists (it was dropped every fourth cycle, and 5,000
    names parsed again)."""
    recent: _Recent[str] = _Recent(size=3)
    derived = []

    def derive(key: bytes) -> str:
        derived.append(key)
        return key.decode()

    for cycle in range(10):
        assert recent.get(b"[all]", lambda: derive(b"[all]")) == "[all]"
        recent.put(b"[kept]", "kept")  # the same kept list again replaces the one before
        recent.put(b"[kept-%d]" % cycle, f"kept-{cycle}")
    assert derived == [b"[all]"]
    assert recent.get(b"[kept-9]", lambda: derive(b"[kept-9]")) == "kept-9"
    assert recent.get(b"[kept-0]", lambda: derive(b"[kept-0]")) == "[kept-0]"  # long gone: derived again
    assert derived == [b"[all]", b"[kept-0]"]


def test_names_the_cache_does_not_hold_are_answered_up_to_a_bound(client):
    """One reply line per unknown name: past the bound, a request of names made up (4 MB of them
    made a 19 MB reply) is refused instead."""
    pod = gang_pod()
    for verb in ("filter", "prioritize"):
        few = client.post(f"/extender/{verb}", json={"Pod": pod, "NodeNames": [*ALL, *(f"new-{k}" for k in range(MAX_UNKNOWN_NODES))]})
        assert few.status_code == 200, few.text
        many = client.post(f"/extender/{verb}", json={"Pod": pod, "NodeNames": [*ALL, *(f"new-{k}" for k in range(MAX_UNKNOWN_NODES + 1))]})
        assert many.status_code == 400 and "1,001 nodes slotwise's cache does not hold" in many.json()["detail"]
    assert len(client.post("/extender/filter", json={"Pod": pod, "NodeNames": [f"new-{k}" for k in range(MAX_UNKNOWN_NODES)]}
                           ).json()["FailedNodes"]) == MAX_UNKNOWN_NODES


def test_huge_bodies_and_unknown_verbs_are_refused(client):
    huge = b'{"Pod": {}, "NodeNames": ["' + b"x" * (MAX_BODY_BYTES + 1) + b'"]}'
    assert client.post("/extender/filter", content=huge).status_code == 413

    def chunks():  # no Content-Length: the limit holds while streaming too
        yield huge[: len(huge) // 2]
        yield huge[len(huge) // 2:]

    assert client.post("/extender/filter", content=chunks()).status_code == 413
    odd = client.post("/extender/filter", content=b"{}", headers={"content-length": b"\xb2"})  # isdigit() says yes
    assert odd.status_code == 400 and "Content-Length" in odd.json()["detail"]
    reply = client.post("/extender/unreserve", json={})
    assert reply.status_code == 404 and "unknown extender verb" in reply.json()["detail"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(["Pod", "Nodes", "NodeNames", "NodeNameToMetaVictims", "PodName", "PodNamespace", "PodUID",
                        "Node", "metadata", "spec", "name", "containers", "resources", "requests", "Pods", "UID"])
shaped = st.recursive(json_values, lambda inner: st.dictionaries(keys, inner, max_size=5), max_leaves=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verb=st.sampled_from(["filter", "prioritize", "bind", "preempt"]), body=shaped)
def test_fuzzed_requests_never_get_a_server_error(client, verb, body):
    assert client.post(f"/extender/{verb}", json=body).status_code < 500


def _node_json(i: int, gpus: int, tainted: bool) -> dict:
    allocatable = {"cpu": "16", "memory": "64Gi", "pods": "110", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    spec = {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]} if tainted else {}
    return {"metadata": {"name": f"n{i}", "labels": {}}, "spec": spec, "status": {"allocatable": allocatable}}


def _pod_json(name: str, gpus: int, cpu: int, node: str | None = None) -> dict:
    requests = {"cpu": str(cpu), **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    spec: dict = {"containers": [{"name": "c", "image": "x", "resources": {"requests": requests}}]}
    if node is not None:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "t", "uid": f"uid-{name}"}, "spec": spec,
            "status": {"phase": "Running" if node else "Pending"}}


@settings(max_examples=40, deadline=None)
@given(nodes=st.lists(st.tuples(st.sampled_from([0, 1, 4, 8]), st.booleans(), st.integers(0, 4)), min_size=1, max_size=12),
       asks=st.lists(st.tuples(st.sampled_from([0, 1, 2, 8]), st.integers(1, 16)), min_size=1, max_size=3),
       picks=st.lists(st.integers(0, 14), max_size=20))
def test_filter_and_prioritize_replies_agree_with_the_engine(nodes, asks, picks):
    """Whatever the names (repeats, unknown ones), every name is kept or failed exactly once, with
    the engine's own reasons, and prioritize scores exactly the distinct known names; also after
    the node set changes, when remembered name positions must not be reused."""
    from scheduler.model.k8s_json import pod_from_k8s
    from scheduler.placement.filters import run_filters

    cache = ClusterCache()
    cache.replace("nodes", [_node_json(i, g, t) for i, (g, t, _) in enumerate(nodes)])
    cache.replace("pods", [_pod_json(f"run-{i}", min(g, used), 2, f"n{i}") for i, (g, _, used) in enumerate(nodes) if used])
    client = client_for(cache)
    names = [f"n{k}" for k in picks]
    for round_ in range(2):
        for k, (gpus, cpu) in enumerate(asks):
            pod = _pod_json(f"new-{k}", gpus, cpu)
            reply = client.post("/extender/filter", json={"Pod": pod, "NodeNames": names}).json()
            # Read whole, not cut where NodeNames starts (it comes first, with spaces): the same reply.
            assert client.post("/extender/filter", content=json.dumps({"NodeNames": names, "Pod": pod})).json() == reply
            failed, hopeless = reply["FailedNodes"], reply["FailedAndUnresolvableNodes"]
            assert sorted([*reply["NodeNames"], *failed, *hopeless]) == sorted(set(names))
            assert reply["NodeNames"] == [n for n in dict.fromkeys(names) if n in reply["NodeNames"]]  # input order
            with cache.snapshot() as snap:
                engine = run_filters(snap, pod_from_k8s(pod))
                expected = engine.rejections.by_node()
                known = set(snap.index)
            assert reply["NodeNames"] == [n for n in dict.fromkeys(names) if n in known and n not in expected]
            assert {**failed, **hopeless} == {n: expected.get(n, "node not in slotwise's cache yet")
                                             for n in set(names) - set(reply["NodeNames"])}
            scored = client.post("/extender/prioritize", json={"Pod": pod, "NodeNames": names}).json()
            assert sorted(h["Host"] for h in scored) == sorted(set(names) & known)
            assert all(0 <= h["Score"] <= 10 for h in scored)
        # A node set change: n0 goes, so every remembered position is stale.
        cache.apply("nodes", "DELETED", _node_json(0, 0, False))


def test_preempt_runs_off_the_event_loop_one_call_at_a_time(monkeypatch):
    """Filter is answered while a preempt works, and callers of preempt queue rather than
    multiply the work (several made filter wait seconds when it ran on the event loop)."""
    started, release, lock = threading.Event(), threading.Event(), threading.Lock()
    active, most = [0], [0]

    def slow_preempt(self, args):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        started.set()
        release.wait(10)
        with lock:
            active[0] -= 1
        return {"NodeNameToMetaVictims": {}}

    monkeypatch.setattr(Extender, "preempt", slow_preempt)
    app = FastAPI()
    app.include_router(extender_router(recorded_cache()))
    app.get("/healthz")(lambda: {"status": "ok"})
    preempt = {"Pod": gang_pod(), "NodeNameToMetaVictims": {}}
    with serve_in_thread(app) as base, ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(httpx.post, f"{base}/extender/preempt", json=preempt, timeout=30) for _ in range(2)]
        assert started.wait(10)
        filtered = httpx.post(f"{base}/extender/filter", json={"Pod": gang_pod(), "NodeNames": ALL}, timeout=5)
        assert filtered.status_code == 200 and filtered.json()["NodeNames"]
        release.set()
        assert [c.result().status_code for c in calls] == [200, 200]
    assert most[0] == 1
