"""Gangs through the real control plane: all members bound together, or none, with the reason on
every member; scheduler-plugins' PodGroup minMember honoured."""

from __future__ import annotations

import json

import pytest

from e2e.cluster import Cluster
from tests.e2e_cluster import bound, namespace, pod, pods, wait_for, waiting_reason

pytest_plugins = ["tests.e2e_cluster"]
pytestmark = pytest.mark.e2e


def gang_node(cluster: Cluster, name: str) -> None:
    cluster.add_node(name, {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"},
                     {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "e2e/fleet": "gangs"})


def worker(name: str, ns: str, gang: str, **annotations: str) -> dict:
    return pod(name, ns, cpu="8", memory="64Gi", gpus=8, node_selector={"e2e/fleet": "gangs"},
               annotations={"slotwise.io/gang": gang, "slotwise.io/gang-min-members": "4", **annotations})


def test_a_gang_that_does_not_fit_binds_nothing_until_it_all_fits(cluster: Cluster):
    ns = namespace(cluster, "gangs", managed=True)
    for k in range(3):
        gang_node(cluster, f"gang-{k}")
    names = [f"worker-{k}" for k in range(4)]
    cluster.apply([worker(n, ns, "job-1") for n in names])

    def waiting_with_reason() -> dict[str, str] | None:
        found = pods(cluster, ns)
        reasons = {n: waiting_reason(found.get(n, {})) for n in names}
        return reasons if all(reasons.values()) else None  # type: ignore[return-value]

    reasons = wait_for("every member gated with a reason", waiting_with_reason)
    assert all(not p["spec"].get("nodeName") for p in pods(cluster, ns).values())
    assert all("gang" in message for message in reasons.values()), reasons

    gang_node(cluster, "gang-3")
    placed = bound(cluster, ns, names)
    assert sorted(placed.values()) == ["gang-0", "gang-1", "gang-2", "gang-3"], placed
    events = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json"))["items"]
    assert not any(e["reason"] == "FailedScheduling" for e in events)  # slotwise held them; nothing bounced


def test_a_pod_groups_min_member_is_honoured(cluster: Cluster):
    """scheduler-plugins' PodGroup says 2 of the 3 workers are enough: the 2 that fit start."""
    ns = namespace(cluster, "gangs", managed=True)
    fleet = {"e2e/fleet": "podgroup"}
    for name in ("pg-node-0", "pg-node-1"):
        cluster.add_node(name, {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"}, fleet)
    cluster.apply({"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
                   "metadata": {"name": "elastic", "namespace": ns}, "spec": {"minMember": 2}})
    names = [f"elastic-{k}" for k in range(3)]
    cluster.apply([pod(name, ns, cpu="8", memory="64Gi", gpus=8, labels={"scheduling.x-k8s.io/pod-group": "elastic"},
                       node_selector=fleet) for name in names])

    def two_bound() -> dict[str, str] | None:
        found = pods(cluster, ns)
        homes = {n: found[n]["spec"].get("nodeName") for n in names if n in found}
        return homes if sum(1 for h in homes.values() if h) == 2 else None

    homes = wait_for("two of the three members bound", two_bound)
    assert sorted(h for h in homes.values() if h) == ["pg-node-0", "pg-node-1"], homes
