"""``slotwise serve`` as the README starts it, in a dry run on recorded objects: it answers a
recorded extender call and a recorded AdmissionReview, and serves metrics and readiness."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from quota.config import config_from_yaml
from quota.store import Store
from tests.quota_fixtures import serve_in_subprocess

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
RECORDED = ROOT / "tests" / "recorded"
METRICS_TOKEN = "prometheus-" + "m" * 32


def test_serve_answers_recorded_extender_and_admission_calls(tmp_path):
    url = f"sqlite:///{tmp_path / 'slotwise.db'}"
    store = Store(url)
    store.migrate()
    store.replace_config(config_from_yaml((EXAMPLES / "pools.yaml").read_text()), "test")
    store.close()
    (tmp_path / "metrics-token").write_text(METRICS_TOKEN + "\n")
    options = ("--managed", "nlp", "--nodes", str(RECORDED / "nodes.json"), "--pods", str(RECORDED / "pods.json"),
               "--metrics-token-file", str(tmp_path / "metrics-token"))
    with serve_in_subprocess(url, *options) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/readyz").json() == {"status": "ready"}
        filtered = http.post("/extender/filter", content=(EXAMPLES / "extender-filter.json").read_bytes()).json()
        assert filtered["NodeNames"] == ["gpu-a1", "gpu-b1"]
        assert filtered["FailedNodes"] == {"gpu-a2": "Insufficient nvidia.com/gpu"}
        assert set(filtered["FailedAndUnresolvableNodes"]) == {"infra-1"} and filtered["Error"] == ""

        review = json.loads((EXAMPLES / "admission-review.json").read_text())
        mutated = http.post("/webhooks/mutate", json=review).json()
        assert (mutated["apiVersion"], mutated["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
        response = mutated["response"]
        assert response["uid"] == review["request"]["uid"] and response["allowed"]
        patch = json.loads(base64.b64decode(response["patch"]))
        assert {"op": "add", "path": "/spec/schedulingGates", "value": [{"name": "slotwise.io/admission"}]} in patch
        validated = http.post("/webhooks/validate", json=review).json()["response"]
        assert validated["allowed"] and validated["uid"] == review["request"]["uid"]
        review["request"]["namespace"] = "kube-system"
        untouched = http.post("/webhooks/mutate", json=review).json()["response"]
        assert untouched["allowed"] and "patch" not in untouched
        assert http.get("/metrics").status_code == 401  # the gauges name every pool: not for anyone
        scraped = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        assert 'slotwise_decision_seconds_count{verb="filter"} 1.0' in scraped
        assert 'slotwise_decision_seconds_count{verb="mutate"} 1.0' in scraped  # kube-system is not decided
        assert 'slotwise_quota_guaranteed{pool="nlp",resource="nvidia.com/gpu"} 40.0' in scraped
        assert 'slotwise_burst_budget_used_ratio{pool="nlp"} 0.0' in scraped  # nlp has a budget, no burst yet


def test_serve_without_a_cluster_to_follow_is_not_ready(tmp_path):
    """Started with nothing to follow (no --in-cluster, --kubeconfig or recorded files), the
    extender would fail every node: readiness says so instead of taking traffic."""
    with serve_in_subprocess(f"sqlite:///{tmp_path / 'slotwise.db'}") as base, \
            httpx.Client(base_url=base, timeout=10) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert "--in-cluster" in ready.json()["status"]
        assert http.get("/healthz").status_code == 200  # alive, so not restarted: just kept out of the Service


def test_serve_seeds_pools_and_an_admin_token_from_mounted_files(tmp_path):
    """In a cluster the pools come from a ConfigMap and the admin token from a Secret, mounted as
    files: each start imports the one and keeps the other, replacing a rotated token."""
    url = f"sqlite:///{tmp_path / 'slotwise.db'}"
    token_file = tmp_path / "token"
    first, second = "a" * 43, "b" * 43
    options = ("--quota-config", str(EXAMPLES / "pools.yaml"), "--admin-token-file", str(token_file))
    for token, stale in ((first, None), (second, first)):
        token_file.write_text(token + "\n")  # kubectl create secret --from-file keeps a newline
        with serve_in_subprocess(url, *options) as base, httpx.Client(base_url=base, timeout=10) as http:
            pools = http.get("/quota/pools", headers={"Authorization": f"Bearer {token}"})
            assert pools.status_code == 200, pools.text
            assert {"research", "nlp", "vision"} <= {p["name"] for p in pools.json()}
            if stale is not None:
                assert http.get("/quota/pools", headers={"Authorization": f"Bearer {stale}"}).status_code == 401
    store = Store(url)
    actions = [e.action for e in store.audit(1000, subject="bootstrap")]
    store.close()
    assert sorted(actions) == ["token.create", "token.replace"]


@pytest.mark.parametrize("token, problem", [("short", "fewer than 32"), (None, "No such file")])
def test_serve_refuses_a_bad_admin_token_file_in_one_line(tmp_path, token, problem):
    token_file = tmp_path / "token"
    if token is not None:
        token_file.write_text(token)
    result = subprocess.run([sys.executable, "-m", "slotwise.cli", "serve", "--db", f"sqlite:///{tmp_path / 'db'}",
                             "--admin-token-file", str(token_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert problem in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_a_database_outage_leaves_the_webhooks_and_the_extender_working():
    """With the database unreachable (nothing listens on the port), the pod stays ready, mutate
    and the extender answer, validate lets the pod in with a warning (the gate still holds it),
    and the quota API says 503 with the reason: never a 500."""
    from fastapi.testclient import TestClient

    from slotwise.server.app import create_app
    from slotwise.server.cache import ClusterCache

    cache = ClusterCache()
    cache.replace("nodes", json.loads((RECORDED / "nodes.json").read_text())["items"])
    cache.replace("pods", json.loads((RECORDED / "pods.json").read_text())["items"])
    store = Store("postgresql://slotwise:slotwise@127.0.0.1:9/slotwise")  # the discard port: refused
    http = TestClient(create_app(store, cache=cache, managed=["nlp"]), raise_server_exceptions=False)
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"].startswith("unavailable: ")
    review = json.loads((EXAMPLES / "admission-review.json").read_text())
    assert http.post("/webhooks/mutate", json=review).json()["response"]["patch"]
    validated = http.post("/webhooks/validate", json=review)
    assert validated.status_code == 200
    response = validated.json()["response"]
    assert response["allowed"] and "database is unavailable" in response["warnings"][0]
    assert http.post("/extender/filter", content=(EXAMPLES / "extender-filter.json").read_bytes()).status_code == 200
    pools = http.get("/quota/pools", headers={"Authorization": "Bearer " + "t" * 32})
    assert pools.status_code == 503 and pools.json()["detail"].startswith("the database is unavailable: ")
