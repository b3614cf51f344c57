"""Overflow through the real control plane: work waiting past the threshold goes to the
virtual-kubelet node with the ECI annotations, within its project's budget; work that may not
leave the cluster never goes there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from e2e.cluster import Cluster
from tests.e2e_cluster import bound, namespace, pod, pods, serving_with, store, wait_for, waiting_reason

pytest_plugins = ["tests.e2e_cluster"]
pytestmark = pytest.mark.e2e

PRICE = 8.0  # per hour; one hour of max_runtime reserved per pod, against a budget of 20 a day
BURST = {
    "threshold": "5s", "kinds": ["job"], "max_runtime": "1h",
    "targets": [{"name": "eci-e2e", "type": "eci", "provider": "alibabacloud", "startup": "10s",
                 "instance_types": [{"name": "ecs.g7.32xlarge", "cpu": 128, "memory": "512Gi", "price": PRICE}]}],
}
VIRTUAL_NODE = "eci-virtual-node"


@pytest.fixture(scope="module")
def bursting(cluster: Cluster) -> Iterator[Cluster]:
    cluster.add_node(VIRTUAL_NODE, {"cpu": "2000", "memory": "8Ti", "pods": "1000"}, {"type": "virtual-kubelet"},
                     taints=[{"key": "virtual-kubelet.io/provider", "value": "alibabacloud", "effect": "NoSchedule"}])
    wait_for("the virtual node ready", lambda: cluster.node_ready(VIRTUAL_NODE))
    cluster.path("burst.yaml").write_text(yaml.safe_dump(BURST))
    with serving_with(cluster, f"--burst={cluster.path('burst.yaml')}"):
        yield cluster


def big(name: str, ns: str, **kw: object) -> dict:
    """More CPU than any local node has: it can only ever start outside the cluster."""
    return pod(name, ns, cpu="96", memory="64Gi", **kw)  # type: ignore[arg-type]


def test_waiting_jobs_overflow_to_the_virtual_node_within_budget(bursting: Cluster):
    ns = namespace(bursting, "burst", managed=True)
    jobs = [f"job-{k}" for k in range(3)]
    host_path = big("host-path", ns)
    host_path["spec"]["volumes"] = [{"name": "logs", "hostPath": {"path": "/var/log"}}]
    host_path["spec"]["containers"][0]["volumeMounts"] = [{"name": "logs", "mountPath": "/logs"}]
    notebook = big("notebook", ns, labels={"slotwise.io/workload-kind": "notebook"})
    for name in jobs:  # one at a time: the oldest waited longest and goes first
        bursting.apply(big(name, ns))
    bursting.apply([host_path, notebook])

    # Two jobs fit the budget of 20 (8 reserved each); the third waits for budget.
    def two_went() -> list[str] | None:
        found = pods(bursting, ns)
        went = sorted(n for n in jobs if found.get(n, {}).get("spec", {}).get("nodeName") == VIRTUAL_NODE)
        return went if len(went) == 2 else None

    went = wait_for("two jobs bound to the virtual node", two_went)
    found = pods(bursting, ns)
    for name in went:
        annotations = found[name]["metadata"]["annotations"]
        assert annotations["k8s.aliyun.com/eci-use-specs"] == "ecs.g7.32xlarge", annotations
        assert annotations["k8s.aliyun.com/eci-fail-strategy"] == "fail-back", annotations
        assert found[name]["spec"]["activeDeadlineSeconds"] == 3600
        assert found[name]["metadata"]["labels"]["slotwise.io/burst-target"] == "eci-e2e"
    [left] = set(jobs) - set(went)

    expected = {left: "budget left", "host-path": "hostPath volume logs", "notebook": "notebook work may not overflow"}

    def told_why() -> bool:
        found = pods(bursting, ns)
        return all(why in (waiting_reason(found[n]) or "") for n, why in expected.items())

    wait_for("the ones left told why they stay", told_why)
    assert all(not pods(bursting, ns)[n]["spec"].get("nodeName") for n in (left, "host-path", "notebook"))

    spent = store(bursting)
    try:
        reserved = [s.reserved for s in spent.open_spend() if s.pool == "burst"]
    finally:
        spent.close()
    assert sorted(reserved) == [PRICE, PRICE]  # within the budget of 20
    assert bound(bursting, ns, went) == {n: VIRTUAL_NODE for n in went}
