"""Placement through the real kube-scheduler with slotwise as its extender and admission loop:
what kubectl shows once the pods are bound (or why they are not)."""

from __future__ import annotations

import re

import pytest

from e2e.cluster import Cluster
from tests.e2e_cluster import bound, namespace, pod, wait_for

pytest_plugins = ["tests.e2e_cluster"]
pytestmark = pytest.mark.e2e

FLEET = {"e2e/fleet": "placement"}
A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.memory": "81920",
        "nvidia.com/gpu.count": "8", **FLEET}


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> Cluster:
    for name in ("gpu-a", "gpu-b"):
        cluster.add_node(name, {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"}, A100)
    for name in ("cpu-a", "cpu-b"):
        cluster.add_node(name, {"cpu": "32", "memory": "128Gi"}, FLEET)
    wait_for("four ready nodes", lambda: all(cluster.node_ready(n) for n in ("gpu-a", "gpu-b", "cpu-a", "cpu-b")))
    return cluster


def test_gpu_pods_pack_and_cpu_pods_spread_as_slotwise_plans_them(nodes: Cluster):
    """In a managed namespace the admission loop plans each gated pod, seeing the ones before."""
    ns = namespace(nodes, "placement", managed=True)
    nodes.apply([pod(f"train-{k}", ns, cpu="4", gpus=2, node_selector=FLEET) for k in range(3)])
    gpu = bound(nodes, ns, ["train-0", "train-1", "train-2"])
    assert len(set(gpu.values())) == 1 and set(gpu.values()) <= {"gpu-a", "gpu-b"}, gpu  # packed on one node

    nodes.apply([pod(f"web-{k}", ns, cpu="8", memory="8Gi", node_selector=FLEET) for k in range(2)])
    cpu = bound(nodes, ns, ["web-0", "web-1"])
    assert len(set(cpu.values())) == 2 and set(cpu.values()) <= {"cpu-a", "cpu-b"}, cpu  # spread, off GPU hosts


def test_an_unplaceable_gpu_pod_says_why_with_numbers(nodes: Cluster):
    ns = namespace(nodes, "too-big", managed=False)
    nodes.apply(pod("huge", ns, gpus=16, node_selector=FLEET))
    described = wait_for("a FailedScheduling event", lambda: "FailedScheduling" in (
        text := nodes.kubectl("describe", "pod", "huge", "-n", ns)) and text)
    assert re.search(r"0/\d+ nodes are available: .*\b\d+ Insufficient nvidia.com/gpu", described), described


def test_a_pod_created_on_its_node_in_a_managed_namespace_is_admitted(nodes: Cluster):
    """The API server refuses a scheduling gate beside spec.nodeName (a static pod's mirror has
    both): the webhook leaves such a pod ungated."""
    ns = namespace(nodes, "placement", managed=True)
    pinned = pod("pinned", ns, node_selector=FLEET)
    pinned["spec"]["nodeName"] = "cpu-a"
    nodes.apply(pinned)
    assert bound(nodes, ns, ["pinned"]) == {"pinned": "cpu-a"}
