"""slotwise down: what docs/deploy.md says happens, happens (failurePolicy: Fail on the webhooks
of managed namespaces only; unmanaged and system namespaces unaffected), and an admin can release
the pods it left gated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from e2e.cluster import Cluster
from e2e.cluster import ROOT
from tests.e2e_cluster import bound, namespace, pod, pods, wait_for, waiting_reason

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


def test_an_admin_releases_the_pods_slotwise_left_gated(cluster: Cluster):
    """The emergency release: with slotwise down, ``slotwise ungate`` lifts its gate and
    kube-scheduler schedules the pod as if slotwise were not there."""
    fleet = {"e2e/fleet": "release"}
    cluster.add_node("release-cpu", {"cpu": "8", "memory": "32Gi"}, fleet)
    ns = namespace(cluster, "release", managed=True)
    cluster.apply(pod("over-quota", ns, cpu="2", node_selector=fleet))  # its pool guarantees 1 cpu
    reason = wait_for("it waits for quota", lambda: waiting_reason(pods(cluster, ns).get("over-quota", {})))
    assert "needs 2 cpu" in reason, reason
    cluster.kill_slotwise()
    try:
        released = subprocess.run([sys.executable, "-m", "slotwise.cli", "ungate", "-n", ns,
                                   f"--kubeconfig={cluster.admin}"], capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert released.returncode == 0, released.stdout + released.stderr
        assert f"released {ns}/over-quota" in released.stdout and "1 of 1 gated pod(s) released" in released.stdout
        assert bound(cluster, ns, ["over-quota"]) == {"over-quota": "release-cpu"}
    finally:
        cluster.start_slotwise()
