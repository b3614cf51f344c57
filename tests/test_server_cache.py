"""The cluster cache against recorded API JSON: list, watch (ADDED/MODIFIED/DELETED/BOOKMARK),
relist after 410 Gone, PodGroups (a CRD missing included), and bind, through the official client
talking HTTP to a stub API server."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes.client import ApiClient, ApiException

from scheduler.gang.groups import PodGroup
from slotwise.server.cache import ClusterCache
from slotwise.server.kube import Expired, Kube
from tests.stub_http import StubHandler, serving

RECORDED = Path(__file__).parent / "recorded"


class StubApiServer(StubHandler):
    """Serves nodes.json, pods.json then pods-relist.json, podgroups.json (scheduler-plugins'), and
    watch-<kind>-<rv>.jsonl streams; API groups in ``missing`` answer 404, as for a CRD not installed."""

    protocol_version = "HTTP/1.0"  # the body ends when the connection closes, like a finished watch
    lists: Counter[str] = Counter()
    bindings: list[tuple[str, dict]] = []
    missing: set[str] = set()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        kind = url.path.rsplit("/", 1)[-1]
        query = parse_qs(url.query)
        group = url.path.split("/")[2] if url.path.startswith("/apis/") else ""
        if group in self.missing:
            self.lists[group] += 1
            self.reply(404, (RECORDED / "crd-not-found.txt").read_bytes(), "text/plain")
            return
        if query.get("watch") == ["true"]:
            stream = RECORDED / f"watch-{kind}-{query['resourceVersion'][0]}.jsonl"
            if not stream.exists():
                time.sleep(0.1)  # nothing new: a real server would hold the watch open
            self.reply(200, stream.read_bytes() if stream.exists() else b"")
            return
        self.lists[kind] += 1
        name = "pods-relist.json" if kind == "pods" and self.lists[kind] > 1 else f"{kind}.json"
        self.reply(200, (RECORDED / name).read_bytes())

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bindings.append((self.path, body))
        self.reply(201, json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}).encode())



@pytest.fixture
def api() -> Iterator[str]:
    StubApiServer.lists = Counter()
    StubApiServer.bindings = []
    StubApiServer.missing = {"scheduling.volcano.sh"}  # the recorded cluster runs scheduler-plugins only
    with serving(StubApiServer) as url:
        yield url


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the cache did not converge"
        time.sleep(0.02)


def whole_free(cache: ClusterCache) -> dict[str, int]:
    with cache.snapshot() as snap:
        return dict(zip(snap.names, snap.gpu_whole_free.tolist()))


def test_the_cache_follows_lists_watches_and_relists(api):
    cache = ClusterCache(Kube.at(api), watch_timeout_s=1, retry_s=0.05)
    cache.start()
    try:
        eventually(lambda: cache.synced and StubApiServer.lists["pods"] >= 2
                   and {p.name for p in cache.pods() if p.node_name is None} == {"nb-1"})
        eventually(lambda: "gpu-a3" in whole_free(cache))
        with cache.snapshot() as snap:
            assert sorted(snap.names) == ["gpu-a1", "gpu-a2", "gpu-a3", "gpu-b1"]  # infra-1 deleted, gpu-a3 added
            assert snap.taints[0].key == "node.kubernetes.io/unschedulable"  # gpu-b1 cordoned
            assert sorted(snap.assignments) == ["team-a/w-0"]
        # eval-3 vanished in the relist after 410; the 7-GPU job was deleted; w-0 took 2 on gpu-a3.
        assert whole_free(cache) == {"gpu-a1": 8, "gpu-a2": 8, "gpu-b1": 4, "gpu-a3": 6}
        assert cache.pod_key("6f1c0d2e-0000-0000-0000-000000000001") == "team-a/w-0"
    finally:
        cache.stop()


def test_podgroups_are_listed_and_watched_through_the_custom_objects_api(api):
    cache = ClusterCache(Kube.at(api), watch_timeout_s=1, retry_s=0.05)
    cache.start()
    try:
        # Listed: job42 (minMember 2, timeout 120) and gpt; then job42 raised to 3, bert added, gpt deleted.
        eventually(lambda: cache.pod_groups() == {("scheduler-plugins", "team-a/job42"): PodGroup(3, 120.0),
                                                  ("scheduler-plugins", "nlp/bert"): PodGroup(2)})
        assert cache.synced and cache.pod_groups_known  # Volcano's CRD is missing: known, not waited for
        assert StubApiServer.lists["podgroups"] == 1 and StubApiServer.lists["scheduling.volcano.sh"] == 1
    finally:
        cache.stop()


def test_a_missing_podgroup_crd_is_reported_once_and_the_cache_works_without_it(api, caplog):
    StubApiServer.missing = {"scheduling.volcano.sh", "scheduling.x-k8s.io"}
    caplog.set_level(logging.INFO, "slotwise.server.cache")
    cache = ClusterCache(Kube.at(api), resync_s=0.1, watch_timeout_s=1, retry_s=0.05)
    cache.start()
    try:
        eventually(lambda: min(StubApiServer.lists[g] for g in StubApiServer.missing) >= 3)
        assert cache.synced and cache.pod_groups_known and cache.pod_groups() == {}
        assert "gpu-a1" in whole_free(cache)
    finally:
        cache.stop()
    said = [r.getMessage() for r in caplog.records]
    assert [m for m in said if "podgroups.scheduling.volcano.sh" in m] == [
        "cannot list podgroups.scheduling.volcano.sh (404 Not Found): gangs named by them use their pods' own "
        "annotations; checked again every 0.1 s"]
    assert sum("podgroups.scheduling.x-k8s.io" in m for m in said) == 1
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


def test_watch_events_stay_json_without_the_clients_models(api, monkeypatch):
    """Each event is decoded once, into the JSON the stream carried: the client's reader decodes
    it three times, and by default builds a V1Pod too (1.7 ms of Python for a 10 KB pod)."""
    built = []
    monkeypatch.setattr(ApiClient, "deserialize", lambda *args, **kwargs: built.append(args))
    events = list(Kube.at(api).watch("pods", "250", timeout_s=1))
    recorded = [json.loads(line) for line in (RECORDED / "watch-pods-250.jsonl").read_text().splitlines()]
    assert events == [(e["type"], e["object"]) for e in recorded] and not built


class Stream:
    """A streamed reply in the chunks given: watch events need not end where a chunk does."""

    def __init__(self, *chunks: bytes):
        self.chunks = chunks
        self.released = False

    def stream(self, amt=None, decode_content=False) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        self.released = True


def watching(monkeypatch, reply: Stream) -> Kube:
    kube = Kube.at("http://127.0.0.1:1")
    monkeypatch.setattr(kube.core, "list_node", lambda **kwargs: reply)
    return kube


def test_a_watch_reads_events_split_across_chunks_and_gives_its_connection_back(monkeypatch):
    reply = Stream(b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n{"type":"MODI',
                   b'FIED","object":{"metadata":{"name":"\xc3\xa9"}}}\n\n', b'{"type":"BOOKMARK","object":{}}\n')
    events = list(watching(monkeypatch, reply).watch("nodes", "1", timeout_s=1))
    assert events == [("ADDED", {"metadata": {"name": "a"}}), ("MODIFIED", {"metadata": {"name": "é"}}),
                      ("BOOKMARK", {})]
    assert reply.released


def test_a_watch_error_event_ends_the_watch_with_its_status(monkeypatch):
    gone = b'{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}\n'
    with pytest.raises(Expired, match="Expired: too old"):
        list(watching(monkeypatch, Stream(gone)).watch("nodes", "1", timeout_s=1))
    other = b'{"type":"ERROR","object":{"kind":"Status","code":500,"reason":"InternalError","message":"etcd"}}\n'
    with pytest.raises(ApiException) as raised:
        list(watching(monkeypatch, Stream(other)).watch("nodes", "1", timeout_s=1))
    assert raised.value.status == 500 and raised.value.reason == "InternalError: etcd"


def test_bind_posts_a_binding_for_the_pod(api):
    Kube.at(api).bind("team-a", "w-0", "6f1c0d2e-0000-0000-0000-000000000001", "gpu-a1")
    [(path, body)] = StubApiServer.bindings
    assert path == "/api/v1/namespaces/team-a/pods/w-0/binding"
    assert body["metadata"] == {"name": "w-0", "namespace": "team-a", "uid": "6f1c0d2e-0000-0000-0000-000000000001"}
    assert body["target"] == {"apiVersion": "v1", "kind": "Node", "name": "gpu-a1"}


def events(name: str) -> list[tuple[str, dict]]:
    return [(e["type"], e["object"]) for e in map(json.loads, (RECORDED / name).read_text().splitlines())]


def test_pod_events_update_the_snapshot_in_place_as_a_rebuild_would():
    nodes = json.loads((RECORDED / "nodes.json").read_text())["items"]
    live = ClusterCache()
    live.replace("nodes", nodes)
    live.replace("pods", json.loads((RECORDED / "pods-relist.json").read_text())["items"])
    for event, obj in events("watch-nodes-100.jsonl"):
        live.apply("nodes", event, obj)
    with live.snapshot() as before:
        held = before
    for event, obj in events("watch-pods-250.jsonl"):
        live.apply("pods", event, obj)
    rebuilt = ClusterCache()
    rebuilt.replace("nodes", [o for e, o in events("watch-nodes-100.jsonl") if e == "ADDED"] +
                    [o for o in nodes if o["metadata"]["name"] in ("gpu-a1", "gpu-a2")] +
                    [o for e, o in events("watch-nodes-100.jsonl") if e == "MODIFIED"])
    rebuilt.replace("pods", [o for e, o in events("watch-pods-250.jsonl") if e != "DELETED"])
    with live.snapshot() as a, rebuilt.snapshot() as b:
        assert a is held  # updated, not rebuilt
        order = [b.index[n] for n in a.names]
        assert (a.free == b.free[:, order]).all() and (a.gpu_free == b.gpu_free[order]).all()
        assert sorted(a.assignments) == sorted(b.assignments) == ["team-a/w-0"]


def test_a_relist_updates_the_snapshot_in_place_as_a_rebuild_would():
    """The periodic resync lists everything again: what did not change keeps the snapshot, and
    changed pods are accounted in place, as watch events are (a rebuild at 5,000 nodes and 20,000
    pods held the extender up for seconds)."""
    nodes = json.loads((RECORDED / "nodes.json").read_text())["items"]
    pods = json.loads((RECORDED / "pods.json").read_text())["items"]
    relisted = json.loads((RECORDED / "pods-relist.json").read_text())["items"]
    live = ClusterCache()
    live.replace("nodes", nodes)
    live.replace("pods", pods)
    with live.snapshot() as held:
        pass
    live.replace("nodes", json.loads(json.dumps(nodes)))  # the same, read again
    live.replace("pods", relisted)
    rebuilt = ClusterCache()
    rebuilt.replace("nodes", nodes)
    rebuilt.replace("pods", relisted)
    with live.snapshot() as a, rebuilt.snapshot() as b:
        assert a is held  # updated, not rebuilt
        assert a.names == b.names and sorted(a.assignments) == sorted(b.assignments)
        assert (a.free == b.free).all() and (a.gpu_free == b.gpu_free).all()
    cordoned = json.loads(json.dumps(nodes))
    cordoned[0]["spec"]["taints"] = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    live.replace("nodes", cordoned)
    with live.snapshot() as after:
        assert after is held  # a node cordoned: replaced in place, with the taint and the same pods
        assert after.taint_matrix[after.index[cordoned[0]["metadata"]["name"]]].any()
        assert (after.free == b.free).all()
    resized = json.loads(json.dumps(cordoned))
    resized[0]["status"]["allocatable"]["cpu"] = "1"
    live.replace("nodes", resized)
    with live.snapshot() as after:
        assert after is not held  # a node resized: rebuilt
        assert after.allocatable[after.column["cpu"], after.index[resized[0]["metadata"]["name"]]] == 1000


def test_node_heartbeats_keep_the_snapshot_and_real_changes_rebuild_it(caplog: pytest.LogCaptureFixture):
    nodes = json.loads((RECORDED / "nodes.json").read_text())["items"]
    cache = ClusterCache()
    timed: list[tuple[str, float]] = []
    cache.on_rebuild = lambda reason, seconds: timed.append((reason, seconds))
    cache.replace("nodes", nodes)
    with cache.snapshot() as first:
        pass
    heartbeat = json.loads(json.dumps(nodes[0]))
    heartbeat["metadata"]["resourceVersion"] = "999"
    heartbeat["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-11-25T10:00:00Z"}]
    cache.apply("nodes", "MODIFIED", heartbeat)
    with cache.snapshot() as after_heartbeat:
        assert after_heartbeat is first
    name = nodes[0]["metadata"]["name"]
    relabelled = json.loads(json.dumps(heartbeat))
    relabelled["metadata"]["labels"]["topology.kubernetes.io/zone"] = "elsewhere"
    relabelled["spec"]["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
    cache.apply("nodes", "MODIFIED", relabelled)
    with cache.snapshot() as updated:  # labels and taints: the node replaced in place
        assert updated is first and updated.version[updated.index[name]] > 0
        assert updated.nodes[updated.index[name]].labels["topology.kubernetes.io/zone"] == "elsewhere"
        assert updated.labels("topology.kubernetes.io/zone").lookup.keys() >= {"elsewhere"}
        assert updated.taint_matrix[updated.index[name]].any()
    resized = json.loads(json.dumps(relabelled))
    resized["status"]["allocatable"]["cpu"] = "1"
    cache.apply("nodes", "MODIFIED", resized)
    with caplog.at_level(logging.INFO, "slotwise.server.cache"), cache.snapshot() as rebuilt:
        assert rebuilt is not first
        assert rebuilt.allocatable[rebuilt.column["cpu"], rebuilt.index[name]] == 1000
    assert f"node resized: {name} (allocatable)" in caplog.text  # which node, and what changed
    cache.apply("nodes", "DELETED", resized)
    with cache.snapshot() as shrunk:
        assert name not in shrunk.index
    # Counted by cause, for the service's metrics: neither the heartbeat nor the relabelling.
    assert cache.rebuilds == {"first read": 1, "node resized": 1, "node removed": 1}
    assert [reason for reason, _ in timed] == ["first read", "node resized", "node removed"]
    assert all(seconds > 0 for _, seconds in timed)


def test_gated_pods_keep_their_object_until_the_gate_or_the_pod_goes():
    gate = "slotwise.io/admission"
    borrow, train, nb = json.loads((RECORDED / "admission-pods.json").read_text())["items"]
    cache = ClusterCache()
    cache.replace("pods", [borrow, train, nb])

    def held(name: str = gate) -> dict[str, dict]:
        return {pod.key: obj for pod, obj in cache.gated(name)}

    assert held() == {"vision/train-0": train, "solo/nb-1": nb}  # the bound borrower keeps no object
    assert list(held("example.com/other")) == ["solo/nb-1"]
    # Our gate lifted, another one left: no longer ours to decide, still pending in the cache.
    lifted = {**nb, "spec": {**nb["spec"], "schedulingGates": [{"name": "example.com/other"}]}}
    cache.apply("pods", "MODIFIED", lifted)
    assert list(held()) == ["vision/train-0"] and held("example.com/other") == {"solo/nb-1": lifted}
    cache.apply("pods", "MODIFIED", {**lifted, "spec": {**lifted["spec"], "schedulingGates": [], "nodeName": "gpu-a2"}})
    assert held("example.com/other") == {} and "solo/nb-1" in {p.key for p in cache.pods()}
    cache.apply("pods", "DELETED", train)
    assert held() == {}
    cache.apply("pods", "ADDED", train)
    assert held() == {"vision/train-0": train}
    cache.replace("pods", [borrow])
    assert held() == {}


def test_only_changes_that_may_make_room_count_as_freed():
    """The admission loop places a pod that fit nowhere again only once ``freed`` moves: a bound
    pod gone or changed, a node changed. A status update, a binding, a gated pod come or gone
    only take room, or none."""
    nodes = json.loads((RECORDED / "nodes.json").read_text())["items"]
    borrow, train, _ = json.loads((RECORDED / "admission-pods.json").read_text())["items"]
    cache = ClusterCache()
    cache.replace("nodes", nodes)
    cache.replace("pods", [borrow, train])
    counted = cache.freed

    def freed_by(*changes: tuple[str, str, dict]) -> int:
        nonlocal counted
        before = counted
        for kind, event, obj in changes:
            if event == "LIST":
                cache.replace(kind, [obj])
            else:
                cache.apply(kind, event, obj)
        counted = cache.freed
        return counted - before

    running = {**borrow, "status": {**borrow.get("status", {}), "conditions": [{"type": "Ready", "status": "True"}]}}
    assert freed_by(("pods", "MODIFIED", running)) == 0  # the same pod, its status updated
    bound_train = {**train, "spec": {**train["spec"], "schedulingGates": [], "nodeName": "gpu-a2"}}
    assert freed_by(("pods", "MODIFIED", train), ("pods", "MODIFIED", bound_train)) == 0  # gated, then bound
    assert freed_by(("pods", "DELETED", bound_train)) == 1  # bound, gone
    assert freed_by(("pods", "ADDED", train), ("pods", "DELETED", train)) == 0  # gated, gone: it held no room
    heartbeat = json.loads(json.dumps(nodes[0]))
    heartbeat["metadata"]["resourceVersion"] = "999"
    assert freed_by(("nodes", "MODIFIED", heartbeat)) == 0
    untainted = json.loads(json.dumps(heartbeat))
    untainted["spec"]["taints"] = []
    untainted["metadata"]["labels"]["slotwise.test/relabelled"] = "yes"
    assert freed_by(("nodes", "MODIFIED", untainted)) == 1
    assert freed_by(("pods", "LIST", running)) == 0  # a resync that changes nothing
    assert freed_by(("pods", "LIST", train)) == 1  # a resync that misses a bound pod
