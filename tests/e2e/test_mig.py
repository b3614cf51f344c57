"""MIG through the real control plane: a pod asking a MIG slice lands only on a node whose agent
reported a free instance of its profile, though both nodes advertise the resource; with none
free, it waits and says why."""

from __future__ import annotations

import ssl

import httpx
import pytest

from e2e.cluster import Cluster
from tests.e2e_cluster import (
    MIG_TOKEN,
    bound,
    namespace,
    pod,
    pods,
    serving_with,
    wait_for,
    waiting_reason,
)

pytest_plugins = ["tests.e2e_cluster"]
pytestmark = pytest.mark.e2e

PRODUCT = "NVIDIA-A100-SXM4-80GB"


def report(node: str, in_use: bool) -> dict:
    """One A100 split into two 3g.40gb instances, both in use or both free."""
    return {"node": node, "gpus": [{"index": 0, "product": PRODUCT, "mig_enabled": True, "instances": [
        {"profile": "3g.40gb", "start": 0, "size": 4, "in_use": in_use},
        {"profile": "3g.40gb", "start": 4, "size": 4, "in_use": in_use}]}]}


def test_a_mig_pod_lands_where_the_agent_reported_a_free_instance(cluster: Cluster):
    fleet = {"e2e/fleet": "mig"}
    for name in ("mig-busy", "mig-free"):
        cluster.add_node(name, {"cpu": "32", "memory": "256Gi", "nvidia.com/mig-3g.40gb": "2"},
                         {"nvidia.com/gpu.product": f"{PRODUCT}-MIG-3g.40gb", **fleet})
    with httpx.Client(base_url=cluster.slotwise_url, verify=ssl.create_default_context(cafile=cluster.path("ca.crt")),
                      headers={"Authorization": f"Bearer {MIG_TOKEN}"}) as agent:
        for node, in_use in (("mig-busy", True), ("mig-free", False)):
            agent.post(f"/mig/nodes/{node}", json=report(node, in_use)).raise_for_status()
    ns = namespace(cluster, "mig", managed=True)
    for k in range(3):
        cluster.apply(pod(f"slice-{k}", ns, cpu="4", extra={"nvidia.com/mig-3g.40gb": "1"}, node_selector=fleet))
        if k < 2:  # one at a time: which two start is then decided
            assert bound(cluster, ns, [f"slice-{k}"]) == {f"slice-{k}": "mig-free"}

    # mig-busy advertises two slices, but its agent reported both in use: the third waits.
    message = wait_for("the third slice gated with a reason", lambda: waiting_reason(pods(cluster, ns)["slice-2"]))
    assert "1 no free valid MIG slot for 3g.40gb" in message, message
    assert not pods(cluster, ns)["slice-2"]["spec"].get("nodeName")


def test_an_agent_with_its_own_token_reports_its_own_node_only(cluster: Cluster):
    """The agent's projected ServiceAccount token, bound to its pod on node mig-own: the API
    server's TokenReview names that node, and only that node's layout is taken from it."""
    cluster.add_node("mig-own", {"cpu": "32", "memory": "256Gi", "nvidia.com/mig-3g.40gb": "2"},
                     {"nvidia.com/gpu.product": f"{PRODUCT}-MIG-3g.40gb"})
    ns = namespace(cluster, "mig-agents", managed=False)  # where the GPU Operator would run the DaemonSet
    agent = pod("mig-agent-own", ns)
    agent["spec"] |= {"nodeName": "mig-own", "serviceAccountName": "slotwise-mig-agent"}
    cluster.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "slotwise-mig-agent", "namespace": ns}},
                   agent])
    token = cluster.kubectl("create", "token", "slotwise-mig-agent", "-n", ns, "--audience", "slotwise",
                            "--bound-object-kind", "Pod", "--bound-object-name", "mig-agent-own").strip()
    with serving_with(cluster, f"--mig-agents={ns}/slotwise-mig-agent"), \
            httpx.Client(base_url=cluster.slotwise_url, verify=ssl.create_default_context(cafile=cluster.path("ca.crt")),
                         headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.post("/mig/nodes/mig-own", json=report("mig-own", False)).status_code == 204
        refused = client.post("/mig/nodes/mig-free", json=report("mig-free", True))
        assert refused.status_code == 403 and "mig-own" in refused.json()["detail"], refused.text
        assert client.get("/mig/nodes/mig-own").json()["gpus"][0]["instances"][0]["in_use"] is False
        forged = client.post("/mig/nodes/mig-own", json=report("mig-own", True), headers={"Authorization": "Bearer x"})
        assert forged.status_code == 401
