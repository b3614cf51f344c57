"""GPU shares through the real control plane (docs/gpu-sharing.md): share pods sized as the openb
trace's land on one node's GPUs, each shared GPU held by a reservation pod; the reservation's
report reaches every share of its GPU through a ConfigMap; no GPU holds more than 1000 milli, a
whole-GPU pod never gets a shared GPU, and what finishes is cleaned up. kwok runs no containers:
the test runs ``slotwise gpu-reservation`` itself, as the reservation container would, with the
reservation service account's token."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from e2e.cluster import NAMESPACE, ROOT, Cluster
from tests.conftest import OPENB
from tests.e2e_cluster import bound, namespace, pod, pods, wait_for, waiting_reason

pytest_plugins = ["tests.e2e_cluster"]
pytestmark = pytest.mark.e2e

FLEET = {"e2e/fleet": "shares"}
NODE = "share-gpu"
SHARES = 4


def trace_shares() -> list[tuple[str, int]]:
    """The first shares of the openb GPU-sharing trace: (pod name, milli-GPU)."""
    trace = OPENB / "openb_pod_list_gpushare40.csv"
    if not trace.exists():
        pytest.skip(f"openb traces not found at {OPENB}")
    with trace.open() as f:
        rows = [r for r in csv.DictReader(f) if 0 < int(r["gpu_milli"]) < 1000]
    return [(r["name"], int(r["gpu_milli"])) for r in rows[:SHARES]]


def reservations(cluster: Cluster) -> dict[str, dict]:
    listed = json.loads(cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", "slotwise.io/gpu-reservation", "-o", "json"))
    return {p["metadata"]["name"]: p for p in listed["items"]}


def play_reservation(cluster: Cluster, name: str, device: str) -> None:
    """What the reservation container does once the device plugin gave it ``device``."""
    token = cluster.kubectl("create", "token", "slotwise-gpu-reservation", "-n", NAMESPACE).strip()
    kubeconfig = cluster.kubeconfig("gpu-reservation", {"token": token})
    result = subprocess.run([sys.executable, "-m", "slotwise.cli", "gpu-reservation", f"--kubeconfig={kubeconfig}",
                             "--no-hold"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "POD_NAME": name, "POD_NAMESPACE": NAMESPACE,
                                 "NVIDIA_VISIBLE_DEVICES": device})
    assert result.returncode == 0, result.stdout + result.stderr


def config_maps(cluster: Cluster, ns: str) -> dict[str, dict]:
    listed = json.loads(cluster.kubectl("get", "configmaps", "-n", ns, "-l", "app.kubernetes.io/managed-by=slotwise",
                                        "-o", "json"))
    return {c["metadata"]["name"]: c for c in listed["items"]}


def test_shares_run_on_reserved_gpus_and_are_cleaned_up(cluster: Cluster):
    cluster.add_node(NODE, {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "2"},
                     {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", **FLEET})
    wait_for("the GPU node ready", lambda: cluster.node_ready(NODE))
    ns = namespace(cluster, "shares", managed=True)
    shares = trace_shares()
    names = [name for name, _ in shares]
    milli = dict(shares)
    for name, share in shares:  # one at a time: each decision sees the shares before it
        cluster.apply(pod(name, ns, extra={"slotwise.io/gpu-milli": str(share)}, node_selector=FLEET))
        bound(cluster, ns, [name])

    # Each GPU in use is held by one reservation pod; every share names its group and slot.
    held = wait_for("reservation pods", lambda: reservations(cluster))
    found = pods(cluster, ns)
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        notes = found[name]["metadata"]["annotations"]
        groups[notes["slotwise.io/gpu-group"]].append(name)
        r = held[notes["slotwise.io/gpu-group"]]
        assert r["spec"]["nodeName"] == NODE
        assert r["metadata"]["annotations"]["slotwise.io/gpu-indices"] == notes["slotwise.io/gpu-indices"]
        assert found[name]["spec"]["containers"][0]["envFrom"] == [
            {"configMapRef": {"name": notes["slotwise.io/gpu-env"]}}]
    assert set(groups) == set(held)
    assert len({r["metadata"]["annotations"]["slotwise.io/gpu-indices"] for r in held.values()}) == len(held)
    assert all(sum(milli[n] for n in members) <= 1000 for members in groups.values()), groups
    assert all(r["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1" for r in held.values())
    assert all(r["spec"]["priority"] == 1_000_000_000 for r in held.values())  # never a preemption victim

    # The reservations report their devices (as their containers would); each share gets its GPU's.
    devices = {name: f"GPU-{k:08d}-0000-4000-8000-e2e000000000" for k, name in enumerate(held)}
    for name, device in devices.items():
        play_reservation(cluster, name, device)
    wanted = {found[n]["metadata"]["annotations"]["slotwise.io/gpu-env"]: devices[group]
              for group, members in groups.items() for n in members}
    maps = wait_for("a ConfigMap for every share", lambda: (m := config_maps(cluster, ns)).keys() >= wanted.keys() and m)
    assert {name: maps[name]["data"]["NVIDIA_VISIBLE_DEVICES"] for name in wanted} == wanted

    # Both GPUs are held: a whole-GPU pod waits, though kube-scheduler's count alone has no shares.
    cluster.apply(pod("whole", ns, gpus=1, node_selector=FLEET))
    reason = wait_for("the whole-GPU pod told why it waits", lambda: waiting_reason(pods(cluster, ns).get("whole", {})))
    assert "gpu" in reason.lower(), reason

    # The shares of one GPU finish: their ConfigMaps go with them, the reservation is deleted after
    # its grace, and the whole-GPU pod gets that GPU.
    group, members = next(iter(groups.items()))
    cluster.kubectl("delete", "pod", "-n", ns, *members, "--wait=false")
    wait_for("the idle reservation deleted", lambda: group not in reservations(cluster), timeout=60)
    assert bound(cluster, ns, ["whole"])["whole"] == NODE
    gone = {found[n]["metadata"]["annotations"]["slotwise.io/gpu-env"] for n in members}
    wait_for("the finished shares' ConfigMaps collected", lambda: not gone & config_maps(cluster, ns).keys())
    assert len(reservations(cluster)) == len(held) - 1

