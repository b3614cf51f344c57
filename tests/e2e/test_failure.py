"""slotwise down: what docs/deploy.md says happens, happens (failurePolicy: Fail on the webhooks
of managed namespaces only; unmanaged and system namespaces unaffected)."""

from __future__ import annotations

import json
import subprocess

import pytest

from e2e.cluster import Cluster
from tests.e2e_cluster import bound, namespace, pod

pytest_plugins = ["tests.e2e_cluster"]
pytestmark = pytest.mark.e2e


def test_while_slotwise_is_down_only_managed_pod_creation_is_refused(cluster: Cluster):
    fleet = {"e2e/fleet": "down"}
    cluster.add_node("down-cpu", {"cpu": "32", "memory": "128Gi"}, fleet)
    managed = namespace(cluster, "placement", managed=True)
    unmanaged = namespace(cluster, "outside", managed=False)
    cluster.kill_slotwise()
    try:
        for ns, name in ((unmanaged, "batch"), ("kube-system", "system-agent")):
            cluster.apply(pod(name, ns, cpu="1", node_selector=fleet))
            assert bound(cluster, ns, [name])[name] == "down-cpu"
        refused = subprocess.run(["kubectl", "--kubeconfig", str(cluster.admin), "create", "-f", "-"],
                                 input=json.dumps(pod("gated", managed)), capture_output=True,
                                 text=True, timeout=60)
        assert refused.returncode != 0
        assert "mutate.slotwise.io" in refused.stderr and "failed calling webhook" in refused.stderr, refused.stderr
    finally:
        cluster.start_slotwise()
