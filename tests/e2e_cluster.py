"""The end-to-end tests' plugin (``pytest_plugins = ["tests.e2e_cluster"]``): one real control plane
per test session (e2e/cluster.py), with kwok nodes and slotwise deployed as deploy/ describes it,
and helpers to read what kubectl shows. Without Go or etcd these tests skip with the reason,
except in CI (CI=true), where a cluster that cannot start is a failure."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e.cluster import Cluster, ClusterError, running
from quota.store import Store

WAIT_S = 90.0
#: One pool per managed namespace the scenarios use (a pod whose project has no pool waits, denied).
POOLS = """
reclaim: {grace: 2s}   # kwok deletes an evicted pod when its grace period ends
pools:
  - name: placement
    guaranteed: {cpu: "256", memory: 2Ti, nvidia.com/gpu: "32"}
  - name: gangs
    guaranteed: {cpu: "512", memory: 4Ti, nvidia.com/gpu: "64"}
  - name: mig
    guaranteed: {cpu: "64", memory: 512Gi, nvidia.com/mig-3g.40gb: "8"}
  - name: owner
    guaranteed: {cpu: "64", memory: 512Gi, nvidia.com/gpu: "8"}
    shareable: {nvidia.com/gpu: "8"}
  - name: borrower
    guaranteed: {cpu: "64", memory: 512Gi}
    max: {nvidia.com/gpu: "8"}
  - name: burst
    guaranteed: {cpu: "1024", memory: 4Ti}
    budget: {per_day: 20}
  - name: crash
    guaranteed: {cpu: "64", memory: 256Gi}
  - name: shares
    guaranteed: {cpu: "64", memory: 512Gi, nvidia.com/gpu: "4"}
  - name: release
    guaranteed: {cpu: "1", memory: 8Gi}
"""
#: The bearer token the MIG node agents report with (slotwise serve --mig-token-file).
MIG_TOKEN = "e2e-mig-agents-" + "x" * 24


#: scheduler-plugins' PodGroup, only the fields slotwise reads (the real CRD validates more).
POD_GROUP_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "podgroups.scheduling.x-k8s.io"},
    "spec": {"group": "scheduling.x-k8s.io", "scope": "Namespaced",
             "names": {"kind": "PodGroup", "plural": "podgroups", "singular": "podgroup", "shortNames": ["pg"]},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {"type": "object", "properties": {
                     "minMember": {"type": "integer", "format": "int32"},
                     "scheduleTimeoutSeconds": {"type": "integer", "format": "int32"}}},
                     "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


#: The components whose logs a failed end-to-end test shows (their last lines): slotwise's
#: replicas (one, or the two of test_failover) and kube-scheduler.
LOGS = ("slotwise", "slotwise-a", "slotwise-b", "kube-scheduler")
_started: list[Cluster] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed scenario's report ends with what slotwise and kube-scheduler logged: the cluster's
    folder is gone by the time anyone reads CI's output."""
    report = yield
    if report.failed and _started:
        for name in LOGS:
            log = _started[0].path(f"{name}.log")
            if log.exists():
                report.sections.append((f"{name}.log (last 60 lines)",
                                        "\n".join(log.read_text(errors="replace").splitlines()[-60:])))
    return report


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    try:
        with running() as started:
            _started.append(started)
            started.apply(POD_GROUP_CRD)  # before slotwise's restart below, which lists PodGroups
            wait_for("the PodGroup CRD established", lambda: "podgroups" in started.kubectl(
                "api-resources", "--api-group=scheduling.x-k8s.io", "-o", "name", check=False))
            started.path("mig-token").write_text(MIG_TOKEN)
            started.serve_options.append(f"--mig-token-file={started.path('mig-token')}")
            started.use_pools(POOLS)
            yield started
    except ClusterError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the end-to-end cluster did not start: {exc}")
        pytest.skip(f"no end-to-end cluster here: {exc}")


@contextlib.contextmanager
def serving_with(cluster: Cluster, *options: str) -> Iterator[Cluster]:
    """slotwise restarted with ``options`` added, and restarted without them afterwards."""
    cluster.serve_options += options
    cluster.restart_slotwise()
    try:
        yield cluster
    finally:
        for option in options:
            cluster.serve_options.remove(option)
        cluster.restart_slotwise()


def pod(name: str, namespace: str, *, cpu: str = "1", memory: str = "1Gi", gpus: int = 0,
        labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        extra: dict[str, str] | None = None, node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": memory, **({"nvidia.com/gpu": str(gpus)} if gpus else {}), **(extra or {})}
    limits = {r: q for r, q in requests.items() if r not in ("cpu", "memory")}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "main", "image": "registry.example/train:1",
                                     "resources": {"requests": requests, **({"limits": limits} if limits else {})}}],
                     "terminationGracePeriodSeconds": 0, **({"nodeSelector": node_selector} if node_selector else {})}}


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """``check()``'s first truthy value, polled; a clear failure after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def pods(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    listed = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json"))
    return {p["metadata"]["name"]: p for p in listed["items"]}


def namespace(cluster: Cluster, name: str, *, managed: bool) -> str:
    labels = {"slotwise.io/managed": "true"} if managed else {}
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    wait_for(f"the default ServiceAccount of {name}",
             lambda: "default" in cluster.kubectl("get", "serviceaccount", "-n", name, "-o", "name", check=False))
    return name


def bound(cluster: Cluster, ns: str, names: list[str], timeout: float = WAIT_S) -> dict[str, str]:
    """The node each of ``names`` is bound to, once all are."""
    def all_bound() -> dict[str, str] | None:
        found = pods(cluster, ns)
        nodes = {n: found[n]["spec"].get("nodeName") for n in names if n in found}
        return nodes if len(nodes) == len(names) and all(nodes.values()) else None

    try:
        return wait_for(f"{', '.join(names)} bound", all_bound, timeout)
    except pytest.fail.Exception as exc:  # say why they are not: kubectl describe of those left
        left = [n for n in names if not pods(cluster, ns).get(n, {}).get("spec", {}).get("nodeName")]
        described = cluster.kubectl("describe", "pod", "-n", ns, *left, check=False)
        pytest.fail(f"{exc}\n{described[-4000:]}")


def waiting_reason(pod_object: dict[str, Any]) -> str | None:
    """Why slotwise keeps a pod gated (its ``SlotwiseAdmitted=False`` condition), or None."""
    conditions = pod_object.get("status", {}).get("conditions", [])
    admitted = next((c for c in conditions if c["type"] == "SlotwiseAdmitted"), None)
    return admitted["message"] if admitted is not None and admitted["status"] == "False" else None


def store(cluster: Cluster) -> Store:
    """slotwise's own database, read beside the running service."""
    return Store(cluster.db_url)
