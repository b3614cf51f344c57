"""The service's Prometheus metrics, read back through /metrics as Prometheus would scrape them."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from quota.config import config_from_yaml
from quota.ledger import Ledger, Workload
from scheduler.model.resources import Resources
from slotwise.server.metrics import ServiceMetrics, metrics_router
from tests.quota_fixtures import SCENARIO


def scrape(metrics: ServiceMetrics) -> dict[tuple[str, frozenset], float]:
    app = FastAPI()
    app.include_router(metrics_router(metrics))
    reply = TestClient(app).get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == CONTENT_TYPE_LATEST
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def gpus(n: float) -> Resources:
    return Resources({"nvidia.com/gpu": int(n * 1000), "cpu": 2000})


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics(CollectorRegistry())


def test_quota_gauges_follow_the_ledger_in_gpus_and_cores(metrics):
    ledger = Ledger(config_from_yaml(SCENARIO))
    ledger.add(Workload("train", "nlp", gpus(6)))  # 4 guaranteed + 2 borrowed from vision
    ledger.add(Workload("notebook", "vision", gpus(0.5)))
    metrics.update_quota(ledger)
    got = scrape(metrics)

    def value(field: str, pool: str, resource: str = "nvidia.com/gpu") -> float:
        return got[f"slotwise_quota_{field}", frozenset({"pool": pool, "resource": resource}.items())]

    assert value("used", "nlp") == 6.0 and value("guaranteed", "nlp") == 4.0
    assert value("borrowed", "nlp") == 2.0 and value("lent", "vision") == 2.0
    assert value("used", "vision") == 0.5 and value("used", "ai") == 6.5
    assert value("used", "nlp", "cpu") == 2.0 and value("guaranteed", "nlp", "cpu") == 16.0


def test_a_pool_that_disappears_stops_being_exported(metrics):
    ledger = Ledger(config_from_yaml(SCENARIO))
    metrics.update_quota(ledger)
    assert any(labels >= {("pool", "solo")} for _, labels in scrape(metrics))
    smaller = SCENARIO.split("- name: solo")[0]
    metrics.update_quota(Ledger(config_from_yaml(smaller)))
    assert not any(("pool", "solo") in labels for _, labels in scrape(metrics))


def test_pending_mig_burst_and_budget_gauges(metrics):
    metrics.set_pending({"quota": 3, "capacity": 1})
    metrics.set_pending({"quota": 2})
    metrics.set_mig_free({"1g.10gb": 7, "3g.40gb": 1})
    metrics.set_burst_spend("nlp", 12.5)
    metrics.budget.update("nlp", left=20.0, limit=100.0)
    got = scrape(metrics)
    assert got["slotwise_pending_pods", frozenset({("reason", "quota")})] == 2
    assert ("slotwise_pending_pods", frozenset({("reason", "capacity")})) not in got
    assert got["slotwise_mig_slices_free", frozenset({("profile", "1g.10gb")})] == 7
    assert got["slotwise_burst_spend_reserved", frozenset({("pool", "nlp")})] == 12.5
    assert got["slotwise_burst_budget_used_ratio", frozenset({("pool", "nlp")})] == pytest.approx(0.8)


def test_decision_latency_lands_in_sub_millisecond_buckets(metrics):
    metrics.observe("filter", 0.0002)
    metrics.observe("filter", 0.003)
    with metrics.timed("mutate"):
        pass
    with pytest.raises(RuntimeError), metrics.timed("admit"):
        raise RuntimeError("a failed decision is still timed")
    with pytest.raises(ValueError, match="unknown verb"):
        metrics.observe("bind", 0.1)
    got = scrape(metrics)

    def bucket(verb: str, le: str) -> float:
        return got["slotwise_decision_seconds_bucket", frozenset({("verb", verb), ("le", le)})]

    assert bucket("filter", "0.0001") == 0 and bucket("filter", "0.00025") == 1
    assert bucket("filter", "0.0025") == 1 and bucket("filter", "0.005") == 2
    assert got["slotwise_decision_seconds_count", frozenset({("verb", "mutate")})] == 1
    assert got["slotwise_decision_seconds_count", frozenset({("verb", "admit")})] == 1
    assert got["slotwise_decision_seconds_count", frozenset({("verb", "prioritize")})] == 0


def test_registries_are_separate_per_service():
    first = ServiceMetrics()
    second = ServiceMetrics()  # a second one on the default would raise "Duplicated timeseries"
    first.set_burst_spend("nlp", 12.5)
    first.set_pending({"quota": 3})
    second.set_burst_spend("nlp", 4.0)
    second.set_burst_spend("nlp", 2.0)  # a gauge: the latest value, not a sum
    mine, theirs = scrape(first), scrape(second)
    assert mine["slotwise_burst_spend_reserved", frozenset({("pool", "nlp")})] == 12.5
    assert theirs["slotwise_burst_spend_reserved", frozenset({("pool", "nlp")})] == 2.0
    assert mine["slotwise_pending_pods", frozenset({("reason", "quota")})] == 3
    assert not any(name == "slotwise_pending_pods" for name, _ in theirs)
    assert theirs["slotwise_decision_seconds_count", frozenset({("verb", "filter")})] == 0


def test_only_the_metrics_token_and_admin_tokens_read_the_metrics(tmp_path):
    """The gauges name every pool and what it uses: a viewer of one pool may not read them."""
    from slotwise.server.app import create_app
    from tests.quota_fixtures import ACTOR, sqlite_store

    scrape_token = "prometheus-" + "p" * 32
    with sqlite_store(tmp_path, SCENARIO) as store:
        tokens = {"admin": store.create_token("ops", "admin", None, ACTOR),
                  "viewer": store.create_token("ai-team", "viewer", "ai", ACTOR), "metrics": scrape_token}
        client = TestClient(create_app(store, metrics_token=scrape_token))
        answers = {who: client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code
                   for who, token in {**tokens, "unknown": "x" * 43}.items()}
        assert answers == {"admin": 200, "metrics": 200, "viewer": 403, "unknown": 401}
        refused = client.get("/metrics")
        assert refused.status_code == 401 and "metrics token" in refused.json()["detail"]
        assert client.get("/healthz").status_code == 200  # the probes stay open


def test_snapshot_rebuilds_are_counted_by_cause_and_timed(tmp_path):
    """The service's cache reports each whole rebuild of its snapshot: one that recurs stalls the extender."""
    import json
    from pathlib import Path

    from slotwise.server.app import create_app
    from slotwise.server.cache import ClusterCache
    from tests.quota_fixtures import sqlite_store

    nodes = json.loads((Path(__file__).parent / "recorded" / "nodes.json").read_text())["items"]
    cache = ClusterCache()
    cache.replace("nodes", nodes)
    metrics = ServiceMetrics(CollectorRegistry())
    with sqlite_store(tmp_path, SCENARIO) as store:
        create_app(store, cache=cache, metrics=metrics)
        with cache.snapshot():
            pass
        resized = {**nodes[0], "status": {**nodes[0]["status"], "allocatable": {"cpu": "1", "pods": "10"}}}
        cache.apply("nodes", "MODIFIED", resized)
        with cache.snapshot(), cache.snapshot():  # rebuilt once
            pass
    got = scrape(metrics)
    assert got["slotwise_snapshot_rebuilds_total", frozenset({("reason", "first read")})] == 1
    assert got["slotwise_snapshot_rebuilds_total", frozenset({("reason", "node resized")})] == 1
    assert got["slotwise_snapshot_rebuild_seconds_count", frozenset()] == 2
