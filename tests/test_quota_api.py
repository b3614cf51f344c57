"""The quota REST API through the real app under uvicorn, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from quota.admission import Request
from quota.config import config_from_yaml
from quota.store import Store
from scheduler.model.resources import Resources
from scheduler.model.safe_yaml import load_yaml
from slotwise.quota_views import usage_json
from slotwise.server import quota_api
from slotwise.server.app import create_app
from tests.quota_fixtures import (
    ACTOR,
    EXAMPLE_POOLS,
    SCENARIO,
    db_state,
    serve_in_thread,
    sqlite_store,
    without_research,
)

pytest_plugins = ["tests.quota_fixtures"]


@dataclass
class Api:
    store: Store
    admin: httpx.Client
    viewer: httpx.Client  # reads pool ai and below
    anonymous: httpx.Client


@pytest.fixture
def api(loaded) -> Iterator[Api]:
    admin_token = loaded.create_token("ops", "admin", None, ACTOR)
    viewer_token = loaded.create_token("ai-team", "viewer", "ai", ACTOR)
    with serve_in_thread(create_app(loaded, clock=lambda: 1000.0)) as base:
        clients = [httpx.Client(base_url=base, headers=h, timeout=30) for h in
                   ({"Authorization": f"Bearer {admin_token}"}, {"Authorization": f"Bearer {viewer_token}"}, {})]
        try:
            yield Api(loaded, *clients)
        finally:
            for c in clients:
                c.close()


def pod(name: str, namespace: str, gpus: str, cpu: str = "1") -> dict:
    """A v1 Pod as the API server returns it."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "trainer:1",
                                 "resources": {"requests": {"cpu": cpu, "memory": "1Gi", "nvidia.com/gpu": gpus},
                                               "limits": {"nvidia.com/gpu": gpus}}}]},
        "status": {"phase": "Pending"},
    }


def test_health_and_readiness(api):
    assert api.anonymous.get("/healthz").json() == {"status": "ok"}
    assert api.anonymous.get("/readyz").json() == {"status": "ready"}


UNAUTHENTICATED = [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic b3BzOm9wcw=="},
                   {"Authorization": "Bearer"}]

VIEWER_FORBIDDEN = [
    ("PUT", "/quota/pools/nlp", {"guaranteed": {"cpu": "1"}}),
    ("DELETE", "/quota/pools/solo", None),
    ("PUT", "/quota/config", {"pools": []}),
    ("GET", "/quota/config", None),
    ("POST", "/quota/admissions", {"key": "k", "pool": "nlp", "charge": {"nvidia.com/gpu": 1}}),
    ("DELETE", "/quota/admissions/k", None),
    ("GET", "/quota/audit", None),
    ("GET", "/quota/pools/solo", None),  # outside its subtree
]


def test_unauthenticated_and_forbidden_calls(api):
    before = db_state(api.store)
    for headers in UNAUTHENTICATED:
        response = api.anonymous.get("/quota/pools", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"]
    for method, path, body in VIEWER_FORBIDDEN:
        response = api.viewer.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "ai-team" in response.json()["detail"]
    assert db_state(api.store) == before


def test_viewer_sees_only_its_subtree(api):
    api.admin.post("/quota/admissions", json={"key": "s1", "pool": "solo", "charge": {"nvidia.com/gpu": 1}})
    assert [p["name"] for p in api.viewer.get("/quota/pools").json()] == ["ai", "nlp", "vision"]
    assert api.viewer.get("/quota/pools/nlp").json()["guaranteed"] == {"cpu": "16", "nvidia.com/gpu": "4"}
    usage = api.viewer.get("/quota/usage").json()
    assert {r["pool"] for r in usage["pools"]} == {"ai", "nlp", "vision"}
    admin_usage = api.admin.get("/quota/usage").json()
    assert {r["pool"] for r in admin_usage["pools"]} >= {"ai", "nlp", "vision", "solo"}
    solo = next(r for r in admin_usage["pools"] if r["pool"] == "solo" and r["resource"] == "nvidia.com/gpu")
    assert (solo["used"], solo["workloads"]) == ("1", 1)


def test_a_viewer_sees_its_pools_loans_but_not_who_is_on_the_other_side(tmp_path):
    pools = "pools:\n- {name: nlp, guaranteed: {nvidia.com/gpu: 4}, shareable: {nvidia.com/gpu: 4}}\n" \
            "- {name: solo, guaranteed: {nvidia.com/gpu: 1}}\n"
    with sqlite_store(tmp_path, pools) as store:
        assert store.admit(Request("s", "solo", Resources({"nvidia.com/gpu": 3000})), 0, ACTOR).kind == "borrow"
        ledger = store.ledger()
    assert usage_json(ledger)["loans"] == [{"borrower": "solo", "lender": "nlp", "resource": "nvidia.com/gpu",
                                            "amount": "2"}]
    assert usage_json(ledger, {"nlp"}, viewer=True)["loans"] == [{"borrower": None, "lender": "nlp",
                                                                  "resource": "nvidia.com/gpu", "amount": "2"}]
    assert usage_json(ledger, {"solo"}, viewer=True)["loans"][0]["lender"] is None
    assert usage_json(ledger, {"solo"})["loans"][0]["lender"] == "nlp"  # an admin's view of one pool (quota show)


def test_put_get_delete_pool(api):
    created = api.admin.put("/quota/pools/speech", json={
        "parent": "ai", "description": "asr", "guaranteed": {"cpu": "500m"}, "max": {"nvidia.com/gpu": 2},
        "budget": {"per_day": 10}})
    assert created.status_code == 200, created.text
    assert created.json()["changes"] == 1
    pool = api.admin.get("/quota/pools/speech").json()
    assert pool == {"name": "speech", "parent": "ai", "description": "asr", "public": False, "weight": 1.0,
                    "guaranteed": {"cpu": "500m"}, "max": {"nvidia.com/gpu": "2"}, "shareable": {}, "borrow_limit": {},
                    "budget": {"per_day": 10.0, "per_month": None}}
    assert api.admin.put("/quota/pools/speech", json={"parent": "ai", "description": "asr", "guaranteed": {"cpu": "500m"},
                                                      "max": {"nvidia.com/gpu": 2}, "budget": {"per_day": 10}}
                         ).json()["changes"] == 0
    assert api.admin.delete("/quota/pools/speech").json() == {"deleted": "speech"}
    assert api.admin.get("/quota/pools/speech").status_code == 404
    assert api.admin.delete("/quota/pools/speech").status_code == 404
    assert [e["action"] for e in api.admin.get("/quota/audit", params={"subject": "speech"}).json()] == [
        "pool.delete", "pool.create"]


def test_import_config_as_yaml_and_json(api):
    exported = api.admin.get("/quota/config", params={"format": "yaml"})
    assert exported.headers["content-type"].startswith("application/yaml")
    unchanged = api.admin.put("/quota/config", content=exported.text, headers={"Content-Type": "application/yaml"})
    assert unchanged.json() == {"changes": []}

    document = api.admin.get("/quota/config").json()
    document["pools"].append({"name": "extra", "guaranteed": {"cpu": "2"}})
    changed = api.admin.put("/quota/config", json=document)
    assert changed.status_code == 200, changed.text
    assert changed.json()["changes"] == [{"action": "pool.create", "subject": "extra", "detail": {"parent": None}}]
    assert api.admin.put("/quota/config", content=SCENARIO, headers={"Content-Type": "application/yaml"}
                         ).json()["changes"] == [{"action": "pool.delete", "subject": "extra", "detail": {}}]


def test_an_export_imports_back_whatever_characters_json_carried(api):
    """JSON allows a raw DEL (and other characters YAML's reader refuses) in a string: a JSON body
    is read as JSON, so what was accepted and exported imports back unchanged."""
    document = api.admin.get("/quota/config").json()
    document["pools"].append({"name": "extra", "guaranteed": {"cpu": "2"}, "description": "tab\there, del\x7f, bell\x07"})
    changed = api.admin.put("/quota/config", content=json.dumps(document, ensure_ascii=False).encode(),
                            headers={"Content-Type": "application/json"})
    assert changed.status_code == 200, changed.text
    exported = api.admin.get("/quota/config")
    assert {p["name"]: p.get("description") for p in exported.json()["pools"]}["extra"] == "tab\there, del\x7f, bell\x07"
    again = api.admin.put("/quota/config", content=exported.content, headers={"Content-Type": "application/json"})
    assert again.status_code == 200 and again.json() == {"changes": []}, again.text


def test_import_moves_the_children_of_a_removed_pool(api):
    yaml_type = {"Content-Type": "application/yaml"}
    assert api.admin.put("/quota/config", content=EXAMPLE_POOLS.read_text(), headers=yaml_type).status_code == 200
    moved = api.admin.put("/quota/config", content=without_research(), headers=yaml_type)
    assert moved.status_code == 200, moved.text
    assert {"action": "pool.delete", "subject": "research", "detail": {}} in moved.json()["changes"]
    exported = api.admin.get("/quota/config", params={"format": "yaml"}).text
    assert config_from_yaml(exported) == config_from_yaml(without_research())


#: 538 bytes of YAML aliases for 9**6 pools of one name: validating and checking them took minutes.
ALIASED = "&x0 {name: a}"
for depth in range(1, 7):
    ALIASED = f"&x{depth} {{name: a, pools: [{ALIASED}{f', *x{depth - 1}' * 8}]}}"
ALIASED = f"pools: [{ALIASED}]"

BAD_REQUESTS = [
    # (method, path, how the body is sent, body, status, words the message must hold)
    ("PUT", "/quota/config", "yaml", "pools:\n- name: Bad_Name\n  guaranteed: {cpu: lots}\n", 422,
     ["pool Bad_Name: name: a pool name is lower-case"]),
    ("PUT", "/quota/config", "json", {"pools": [{"name": "a", "guaranteed": {"cpu": "lots"}},
                                                {"name": "b", "max": {"gpu": 1}}]}, 422, ["pool a: guaranteed", "pool b: max"]),
    ("PUT", "/quota/config", "json", {"pools": [{"name": "a", "colour": "red"}, {"name": "b", "max": {"gpu": 1}}]}, 422,
     ["pool a: unknown field 'colour'", "pool b: max: unknown resource 'gpu'"]),
    ("PUT", "/quota/config", "json", {"pools": "all"}, 422, ["pools"]),
    ("PUT", "/quota/config", "json", [1, 2], 422, ["document"]),
    ("PUT", "/quota/config", "raw", "{not json", 400, ["YAML or JSON"]),
    ("PUT", "/quota/config", "json", {"pools": [{"name": "a", "guaranteed": {"cpu": True}}]}, 422, ["pool a: guaranteed: cpu"]),
    ("PUT", "/quota/pools/x", "raw", "{not json", 422, []),
    ("PUT", "/quota/pools/x", "json", {"weight": "heavy"}, 422, ["weight"]),
    ("PUT", "/quota/pools/x", "json", {"weight": 0}, 422, ["weight"]),
    ("PUT", "/quota/pools/x", "json", {"colour": "red"}, 422, ["colour"]),
    ("PUT", "/quota/pools/x", "json", {"guaranteed": {"cpu": "lots"}}, 422, ["pool x: guaranteed"]),
    ("PUT", "/quota/pools/x", "json", {"max": {"cpu": True}}, 422, ["max", "cpu"]),  # as strict as a document
    ("PUT", "/quota/pools/x", "json", {"parent": "nowhere"}, 400, ["nowhere"]),
    ("PUT", "/quota/pools/ai", "json", {"parent": "nlp"}, 400, ["descendant"]),
    ("DELETE", "/quota/pools/ai", "json", None, 400, ["child pools"]),
    ("POST", "/quota/admissions", "json", {"key": "k"}, 422, ["either pods"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "charge": {"cpu": 1}}, 422, ["pool"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pool": "nlp", "charge": {"cpu": "x"}}, 422, ["charge"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pods": []}, 422, ["at least one pod"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pods": [{"metadata": {}}]}, 422, ["metadata.name"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pods": [{"metadata": {"name": "p"}, "spec": {"priority": "hi"}}]},
     422, ["spec.priority"]),
    ("POST", "/quota/admissions", "json", {"key": "", "pool": "nlp", "charge": {}}, 422, ["key"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pool": "nlp", "charge": {}, "priority": "high"}, 422, ["priority"]),
    ("POST", "/quota/admissions", "raw", "[", 422, []),
    ("DELETE", "/quota/admissions/never", "json", None, 404, ["never"]),
    ("GET", "/quota/audit?limit=0", "json", None, 422, ["limit"]),
    ("GET", "/quota/config?format=xml", "json", None, 422, ["format"]),
    # Each of these was a 500, or (weight, budget) accepted and exported as null.
    ("PUT", "/quota/pools/Bearer", "json", {}, 422, ["a pool name is lower-case", "'Bearer'"]),
    ("PUT", "/quota/pools/x", "raw", '{"weight": NaN}', 422, ["weight", "finite number"]),
    ("PUT", "/quota/pools/x", "raw", '{"budget": {"per_day": Infinity}}', 422, ["per_day", "finite number"]),
    ("POST", "/quota/admissions", "raw", '{"key": NaN}', 422, ["key"]),
    ("PUT", "/quota/config", "raw", "[" * 100_000, 400, ["nested too deeply"]),
    # An empty body (or a bare null) removed every pool without a workload.
    ("PUT", "/quota/config", "raw", "", 400, ["no configuration", "to remove every pool"]),
    ("PUT", "/quota/config", "yaml", "null\n", 400, ["no configuration"]),
    ("PUT", "/quota/config", "yaml", ALIASED, 413, ["more than 100000 values"]),
    # Refused before parsing: YAML takes seconds per megabyte and many times its size in memory.
    ("PUT", "/quota/config", "yaml", "pools: []\n#" + "x" * 2**20, 413, ["at most 1,048,576 are read"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pool": "nlp", "charge": {"cpu": 1}, "priority": 2**31}, 422,
     ["priority"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pool": "nlp", "charge": {"cpu": True}}, 422, ["charge", "cpu"]),
    # Saturated at 2**63 - 1, such amounts summed in the ledger's 64-bit counters wrapped.
    ("PUT", "/quota/pools/x", "json", {"max": {"cpu": "1e30"}}, 422, ["max", "more than any cluster holds"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pool": "nlp", "charge": {"memory": "2Ei"}}, 422,
     ["charge", "more than any cluster holds"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pods": [pod("p", "nlp", "99999999999999999999999")]}, 422,
     ["more than any cluster holds"]),
    ("POST", "/quota/admissions", "json", {"key": "k", "pods": [pod(f"w{i}", "nlp", "0", "4e15") for i in range(3)]},
     422, ["together they ask more"]),
]


def test_bad_requests_are_4xx_with_a_message(api):
    before = db_state(api.store)
    for method, path, kind, body, status, words in BAD_REQUESTS:
        if kind == "json":
            response = api.admin.request(method, path, json=body)
        else:
            content_type = "application/yaml" if kind == "yaml" else "application/json"
            response = api.admin.request(method, path, content=body, headers={"Content-Type": content_type})
        case = (method, path, body, response.text)
        assert response.status_code == status, case
        detail = response.json()["detail"]
        assert detail, case
        assert all(word in json.dumps(detail) for word in words), case
        if status == 422 and path == "/quota/config":
            assert detail["problems"], case  # every problem listed
    assert db_state(api.store) == before


def test_values_postgresql_cannot_hold_are_a_400(api):
    """A NUL character, even to look a key up with, was a DataError (a 500); SQLite holds it."""
    if api.store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite holds NUL characters")
    before = db_state(api.store)
    for method, path, body in [("PUT", "/quota/pools/x", {"description": "a\x00b"}),
                               ("POST", "/quota/admissions", {"key": "k\x00", "pool": "nlp", "charge": {"cpu": 1}}),
                               ("DELETE", "/quota/admissions/k%00", None), ("GET", "/quota/audit?subject=%00", None)]:
        response = api.admin.request(method, path, json=body)
        assert response.status_code == 400, (method, path, response.text)
        assert "the database refused a value" in response.json()["detail"]
    assert db_state(api.store) == before


def test_a_configuration_import_does_not_hold_up_other_requests(api, monkeypatch):
    """The import reads and writes off the event loop: PyYAML takes seconds on a large document,
    and the webhooks and the extender must answer meanwhile."""
    parsing, finish = threading.Event(), threading.Event()

    def slow_load(body):
        parsing.set()
        finish.wait(10)
        return load_yaml(body)

    monkeypatch.setattr(quota_api, "load_yaml", slow_load)
    with ThreadPoolExecutor(1) as pool:
        imported = pool.submit(api.admin.put, "/quota/config", content=SCENARIO,
                               headers={"Content-Type": "application/yaml"})
        assert parsing.wait(10)
        assert api.anonymous.get("/healthz", timeout=5).json() == {"status": "ok"}
        finish.set()
        assert imported.result().json() == {"changes": []}


def test_admissions_with_charge_and_pods(api):
    first = api.admin.post("/quota/admissions", json={"key": "train/a", "pool": "nlp", "charge": {"nvidia.com/gpu": "4"}})
    assert first.json() == {"key": "train/a", "pool": "nlp", "decision": "admit", "reason": "project nlp: within its guarantee",
                            "gpu_model": None, "borrowed": {}, "lenders": []}
    borrow = api.admin.post("/quota/admissions", json={"key": "ns/pod-b", "pods": [pod("pod-b", "nlp", "2")]}).json()
    assert (borrow["decision"], borrow["pool"]) == ("borrow", "nlp")
    assert borrow["borrowed"] == {"nvidia.com/gpu": "2"}
    assert borrow["lenders"] == [{"pool": "vision", "amounts": {"nvidia.com/gpu": "2"}}]

    gang = api.admin.post("/quota/admissions", json={"key": "gang", "pods": [pod("w0", "vision", "1"), pod("w1", "vision", "1")]})
    assert gang.json()["decision"] == "admit"
    wait = api.admin.post("/quota/admissions", json={"key": "more", "pool": "vision", "charge": {"nvidia.com/gpu": 3}}).json()
    assert wait["decision"] == "wait" and wait["reason"].startswith("project vision: needs 3 GPU")
    deny = api.admin.post("/quota/admissions", json={"key": "d", "pods": [pod("p", "nowhere", "1")]}).json()
    assert (deny["decision"], deny["pool"]) == ("deny", "nowhere")
    assert "no pool 'nowhere'" in deny["reason"]
    duplicate = api.admin.post("/quota/admissions", json={"key": "gang", "pool": "vision", "charge": {"cpu": 1}})
    assert duplicate.status_code == 409 and "already admitted" in duplicate.json()["detail"]

    assert set(api.store.ledger().workloads) == {"train/a", "ns/pod-b", "gang"}
    assert api.admin.delete("/quota/admissions/train/a").json() == {"released": "train/a", "pool": "nlp"}
    assert api.admin.delete("/quota/admissions/gang").json() == {"released": "gang", "pool": "vision"}
    assert set(api.store.ledger().workloads) == {"ns/pod-b"}

    audit = api.admin.get("/quota/audit", params={"limit": 6}).json()
    assert [(e["action"], e["subject"], e["actor"]) for e in audit] == [
        ("release", "gang", "ops"), ("release", "train/a", "ops"), ("deny", "d", "ops"), ("admit", "gang", "ops"),
        ("borrow", "ns/pod-b", "ops"), ("admit", "train/a", "ops")]
    assert audit[4]["detail"] == {"pool": "nlp", "reason": borrow["reason"]}
    assert all(e["at"] for e in audit)
