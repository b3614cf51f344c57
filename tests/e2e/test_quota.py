"""Quota through the real control plane: a project borrows idle GPUs, their owner asks for its
guarantee, the borrower is evicted through the Eviction API (a PodDisruptionBudget refusing
first) and the owner runs; no pool is above its max at any moment."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from e2e.cluster import Cluster
from tests.e2e_cluster import bound, namespace, pod, pods, store, wait_for, waiting_reason

pytest_plugins = ["tests.e2e_cluster"]
pytestmark = pytest.mark.e2e

FLEET = {"e2e/fleet": "quota"}


class MaxWatch:
    """Polls slotwise's store while the scenario runs: every pool's usage against its max."""

    def __init__(self, cluster: Cluster):
        self.store = store(cluster)
        self.polls = 0
        self.breaches: list[str] = []
        self.most_borrowed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            ledger = self.store.ledger()
            over = np.argwhere(ledger.usage > ledger.max)
            self.breaches += [f"{ledger.names[i]}: {ledger.resources[j]} {ledger.usage[i, j]} > {ledger.max[i, j]}"
                              for i, j in over]
            borrower = ledger.row["borrower"]
            self.most_borrowed = max(self.most_borrowed, int(ledger.usage[borrower, ledger.column["nvidia.com/gpu"]]))
            self.polls += 1

    def __enter__(self) -> MaxWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.store.close()


@pytest.fixture
def watch(cluster: Cluster) -> Iterator[MaxWatch]:
    with MaxWatch(cluster) as w:
        yield w


def events(cluster: Cluster, ns: str, reason: str) -> list[dict]:
    listed = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json"))["items"]
    return [e for e in listed if e["reason"] == reason]


def test_the_owner_reclaims_lent_gpus_through_the_eviction_api(cluster: Cluster, watch: MaxWatch):
    cluster.add_node("quota-gpu", {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"}, FLEET)
    owner = namespace(cluster, "owner", managed=True)
    borrower = namespace(cluster, "borrower", managed=True)

    # The borrower has no GPU guarantee: it runs on what the owner lends while idle.
    lent = [pod(f"borrow-{k}", borrower, gpus=4, labels={"app": "borrow"}, node_selector=FLEET) for k in (0, 1)]
    cluster.apply(lent)
    bound(cluster, borrower, ["borrow-0", "borrow-1"])
    cluster.apply({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": "borrow", "namespace": borrower},
                   "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "borrow"}}}})
    wait_for("the budget to count both pods", lambda: json.loads(cluster.kubectl(
        "get", "pdb", "borrow", "-n", borrower, "-o", "json")).get("status", {}).get("currentHealthy") == 2)

    cluster.apply(pod("own-0", owner, gpus=8, node_selector=FLEET))
    def told_both() -> list[dict] | None:
        found = events(cluster, borrower, "SlotwiseEvictionRefused")
        return found if len({e["involvedObject"]["name"] for e in found}) == 2 else None

    refused = wait_for("the eviction refused by the PodDisruptionBudget, said on both victims", told_both)
    assert {e["involvedObject"]["name"] for e in refused} == {"borrow-0", "borrow-1"}
    assert "owner/own-0" in refused[0]["message"]
    reason = waiting_reason(pods(cluster, owner)["own-0"])
    assert reason is not None and "reclaims lent capacity" in reason, reason
    assert set(pods(cluster, borrower)) == {"borrow-0", "borrow-1"}  # the budget held

    cluster.kubectl("patch", "pdb", "borrow", "-n", borrower, "--type=merge", "-p", '{"spec": {"minAvailable": 0}}')
    assert bound(cluster, owner, ["own-0"])["own-0"] == "quota-gpu"
    wait_for("the borrowers gone", lambda: not pods(cluster, borrower))
    wait_for("own-0 running", lambda: pods(cluster, owner)["own-0"]["status"].get("phase") == "Running")

    evicted = {e.subject for e in watch.store.audit(limit=1000) if e.action == "evict"}
    assert {"borrower/borrow-0", "borrower/borrow-1"} <= evicted, evicted
    assert watch.most_borrowed == 8 * 1000  # the store saw the loan (of 8 GPUs, in milli-GPUs)...
    assert watch.polls > 10 and not watch.breaches, watch.breaches  # ...and no pool above its max, ever
