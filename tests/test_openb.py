"""The openb traces load as the published figures describe them, and bad rows are named."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from scheduler.model.openb import TraceError, read_nodes, read_pods
from scheduler.model.resources import CPU, GPU, GPU_MILLI, MEMORY, Resources
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from scheduler.placement.workload import TargetWorkload

NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model\n"
POD_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"


def test_gpu_nodes_match_the_published_cluster(openb: Path) -> None:
    nodes = read_nodes(openb / "openb_node_list_gpu_node.csv")
    assert len(nodes) == 1213
    assert sum(n.gpu_count for n in nodes) == 6212
    assert all(n.gpu_model for n in nodes)
    assert len(read_nodes(openb / "openb_node_list_all_node.csv")) == 1523


def test_default_pods_by_gpu_demand(openb: Path) -> None:
    pods = read_pods(openb / "openb_pod_list_default.csv")
    kinds = Counter(
        "cpu" if p.gpu is None else "share" if p.gpu.shared else "one" if p.gpu.count == 1 else "multi" for p in pods
    )
    assert len(pods) == 8152
    assert kinds == {"cpu": 1088, "share": 3078, "one": 3911, "multi": 75}


def test_variant_without_timing_columns_loads(openb: Path) -> None:
    pods = read_pods(openb / "openb_pod_list_multigpu30.csv")
    assert len(pods) == 8508
    assert sum(1 for p in pods if p.gpu and p.gpu.count > 1) == 431


def test_rows_become_resources_in_base_units(tmp_path: Path) -> None:
    (tmp_path / "nodes.csv").write_text(NODE_HEADER + "n0,64000,262144,8,V100M32\nc0,32000,131072,0,\n")
    (tmp_path / "pods.csv").write_text(POD_HEADER + "p0,6000,12288,1,460,\np1,8000,30517,4,1000,A100|V100M32\n")
    gpu_node, cpu_node = read_nodes(tmp_path / "nodes.csv")
    assert gpu_node.allocatable == Resources({CPU: 64_000, MEMORY: 262_144 * 2**20, GPU: 8})
    assert (gpu_node.gpu_model, cpu_node.gpu_model) == ("V100M32", None)
    shared, multi = read_pods(tmp_path / "pods.csv")
    assert shared.requests[GPU_MILLI] == 460 and shared.gpu is not None and shared.gpu.shared
    assert multi.requests[GPU] == 4 and multi.gpu is not None and multi.gpu.models == {"A100", "V100M32"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("p0,lots,1,0,0,", "pods.csv line 2: column 'cpu_milli' must be an integer, got 'lots'"),
        ("p0,1000,-5,0,0,", "column 'memory_mib' must not be negative"),
        ("p0,1000,1,1,0,", "gpu_milli must be in 1..1000"),
        ("p0,1000,1,2,500,", "takes them whole"),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path: Path, row: str, message: str) -> None:
    (tmp_path / "pods.csv").write_text(POD_HEADER + row + "\n")
    with pytest.raises(TraceError, match=message):
        read_pods(tmp_path / "pods.csv")


def test_missing_columns_are_named(tmp_path: Path) -> None:
    (tmp_path / "nodes.csv").write_text("sn,cpu\nn0,1\n")
    with pytest.raises(TraceError, match="missing columns cpu_milli, memory_mib, gpu"):
        read_nodes(tmp_path / "nodes.csv")


def test_default_pods_place_on_the_gpu_cluster_without_overcommit(openb: Path) -> None:
    nodes = read_nodes(openb / "openb_node_list_gpu_node.csv")
    pods = read_pods(openb / "openb_pod_list_default.csv")[:1500]
    snapshot = Snapshot(nodes, [])
    placer = Placer(build_profile("fgd", workload=TargetWorkload.from_pods(pods)))
    for pod in pods:
        decision = placer.decide(snapshot, pod)
        assert isinstance(decision, Placement), str(decision)
        snapshot.assign(pod, decision.node_index, decision.gpus)  # the first 1,500 pods use well under the cluster's capacity
    assert (snapshot.free >= 0).all() and (snapshot.gpu_free[snapshot.gpu_free >= 0] <= 1000).all()
