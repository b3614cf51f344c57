"""What benchmarks/cluster.py counts against kube-scheduler alone: shares it put on a node whose
GPUs have no room for them (a node-level extended resource cannot see single GPUs), and the
sustained binding rate; and the pods it creates."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cluster_benchmark", ROOT / "benchmarks" / "cluster.py")
assert spec is not None and spec.loader is not None
cluster = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
spec.loader.exec_module(cluster)


def pod(name: str, *, gpus: int = 0, milli: int = 0) -> dict:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {"slotwise.io/gpu-milli": str(milli)} if milli else {}
    return {"metadata": {"name": name}, "spec": {"containers": [{"resources": {"limits": limits}}]}}


def test_shares_that_no_gpu_left_by_whole_gpu_pods_can_hold_are_over_committed():
    pods = {p["metadata"]["name"]: p for p in (pod("whole", gpus=1), pod("a", milli=600), pod("b", milli=600),
                                                 pod("c", milli=400), pod("cpu"))}
    placed = dict.fromkeys(pods, "n0")
    # Two GPUs: one is the whole-GPU pod's; 600 + 400 share the other, and one 600 has no room.
    over = cluster.overcommitted(pods, placed, {"n0": 2})
    assert len(over) == 1 and over <= {"a", "b"}
    assert cluster.overcommitted(pods, placed, {"n0": 3}) == set()
    del placed["whole"]
    assert cluster.overcommitted(pods, placed, {"n0": 2}) == set()


def test_the_sustained_rate_is_taken_between_the_10_and_90_percent_bindings():
    times = [0.0] * 5 + [10.0 + i for i in range(90)] + [1000.0] * 5  # a burst, one a second, stragglers
    assert cluster.sustained(times) == pytest.approx(1.0)


def test_more_pods_than_the_trace_holds_repeat_it_reshuffled_after_the_usual_order():
    rows = [{"name": f"r{i}", "cpu_milli": "1000", "memory_mib": "512", "num_gpu": "0", "gpu_milli": "0"}
            for i in range(5)]
    once = cluster.pod_objects(rows, None, seed=7)
    more = cluster.pod_objects(rows, 12, seed=7)
    assert more[:5] == once  # a longer run starts as the shorter one did
    names = [p["metadata"]["name"] for p in more]
    assert len(set(names)) == 12 and names == sorted(names)  # name order is creation order
    drawn = Counter(name.split("-", 1)[1] for name in names)
    assert set(drawn) == {f"r{i}" for i in range(5)} and sorted(drawn.values()) == [2, 2, 2, 3, 3]
    assert [n.split("-", 1)[1] for n in names[5:10]] != [n.split("-", 1)[1] for n in names[:5]]  # reshuffled
