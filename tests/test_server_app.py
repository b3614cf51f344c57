"""``slotwise serve`` as the README starts it, in a dry run on recorded objects: it answers a
recorded extender call and a recorded AdmissionReview, and serves metrics and readiness."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx

from quota.config import config_from_yaml
from quota.store import Store
from tests.quota_fixtures import serve_in_subprocess

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
RECORDED = ROOT / "tests" / "recorded"


def test_serve_answers_recorded_extender_and_admission_calls(tmp_path):
    url = f"sqlite:///{tmp_path / 'slotwise.db'}"
    store = Store(url)
    store.migrate()
    store.replace_config(config_from_yaml((EXAMPLES / "pools.yaml").read_text()), "test")
    store.close()
    options = ("--managed", "nlp", "--nodes", str(RECORDED / "nodes.json"), "--pods", str(RECORDED / "pods.json"))
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
        scraped = http.get("/metrics").text
        assert 'slotwise_decision_seconds_count{verb="filter"} 1.0' in scraped
        assert 'slotwise_decision_seconds_count{verb="mutate"} 1.0' in scraped  # kube-system is not decided
        assert 'slotwise_quota_guaranteed{pool="nlp",resource="nvidia.com/gpu"} 40.0' in scraped
        assert 'slotwise_burst_budget_used_ratio{pool="nlp"} 0.0' in scraped  # nlp has a budget, no burst yet
