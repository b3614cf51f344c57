"""slotwise killed (SIGKILL) between recording a gang's placements and lifting all their gates,
then started again: no member stays gated, the gang is charged once, and the audit trail says
where each member runs."""

from __future__ import annotations

import time

import pytest

from e2e.cluster import Cluster
from tests.e2e_cluster import bound, namespace, pod, pods, store

pytest_plugins = ["tests.e2e_cluster"]
pytestmark = pytest.mark.e2e

FLEET = {"e2e/fleet": "crash"}
MEMBERS = 24


def gated(pod_object: dict) -> bool:
    return bool(pod_object["spec"].get("schedulingGates"))


def test_a_kill_mid_gang_admission_leaves_nothing_gated_or_charged_twice(cluster: Cluster):
    for k in range(3):
        cluster.add_node(f"crash-{k}", {"cpu": "16", "memory": "64Gi"}, FLEET)
    ns = namespace(cluster, "crash", managed=True)
    names = [f"rank-{k}" for k in range(MEMBERS)]
    trail = store(cluster)
    try:
        cluster.apply([pod(n, ns, cpu="1", annotations={"slotwise.io/gang": "allreduce",
                                                        "slotwise.io/gang-min-members": str(MEMBERS)},
                           node_selector=FLEET) for n in names])
        # A cycle records its placements (one transaction) before it lifts any gate, eight at a
        # time: killed once they are in the trail, some gates (all, or all but a few) are still on.
        deadline = time.monotonic() + 90
        while sum(e.action == "place" for e in trail.audit(limit=100) if e.subject.startswith(f"{ns}/")) < MEMBERS // 2:
            assert time.monotonic() < deadline, "slotwise did not place half the gang within 90 s"
            time.sleep(0.01)
        cluster.kill_slotwise()
        still_gated = [n for n, p in pods(cluster, ns).items() if gated(p)]
        assert still_gated  # the kill came before the admission was done

        cluster.start_slotwise()
        homes = bound(cluster, ns, names)
        assert not any(gated(p) for p in pods(cluster, ns).values())

        entries = trail.audit(limit=1000)
        gang_key = f"{ns}/allreduce"
        assert [e.action for e in entries if e.subject == gang_key] == ["admit"]  # charged once
        [charge] = [w for w in trail.ledger().charged() if w.pool == "crash"]
        assert (charge.key, charge.charge["cpu"]) == (gang_key, MEMBERS * 1000)
        last_placed = {}
        for e in reversed(entries):  # oldest first: the last decision for a pod wins
            if e.action == "place" and e.subject.startswith(f"{ns}/"):
                last_placed[e.subject.split("/", 1)[1]] = e.detail["node"]
        assert last_placed == homes
    finally:
        trail.close()
        if "slotwise" not in cluster.replicas:  # failed before the restart: the other scenarios need it
            cluster.start_slotwise()
