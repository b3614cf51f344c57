"""Placement decision latency on the openb traces.

Places the openb default pods, in trace order, on the openb GPU nodes and on a larger cluster
made by replicating those nodes, timing every ``Placer.decide`` call (filter + score + device
choice; applying the decision is not timed). Prints median, p90, p99 and max per policy and size.

    python benchmarks/placement.py                       # gpu-pack and fgd at 1,213 and 5,000 nodes
    python benchmarks/placement.py --policies fgd --sizes 5000 --json results.json
    python benchmarks/placement.py --scale-pods          # replicate the pods with the nodes too

By default the larger cluster gets the same 8,152 pods (about a quarter full at 5,000 nodes);
``--scale-pods`` replicates the pod list by the same factor, so every size fills as the openb
cluster does and late decisions face mostly full nodes.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from scheduler.model.cluster import Node, Pod
from scheduler.model.openb import read_nodes, read_pods
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from scheduler.placement.workload import TargetWorkload

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "openb"


def replicate(items: list[Node] | list[Pod], size: int) -> list:
    """``size`` nodes or pods: the originals, then copies named ``<name>-r<k>``."""
    out = list(items)
    k = 1
    while len(out) < size:
        out += [replace(n, name=f"{n.name}-r{k}") for n in items[: size - len(out)]]
        k += 1
    return out[:size]


def run(nodes: list[Node], pods: list[Pod], policy: str, workload: TargetWorkload) -> dict[str, float]:
    snap = Snapshot(nodes)
    placer = Placer(build_profile(policy, seed=0, workload=workload))
    times = np.empty(len(pods))
    placed = 0
    for i, pod in enumerate(pods):
        start = time.perf_counter_ns()
        decision = placer.decide(snap, pod)
        times[i] = time.perf_counter_ns() - start
        if isinstance(decision, Placement):
            snap.assign(pod, decision.node_index, decision.gpus)
            placed += 1
    ms = times / 1e6
    total_gpu = int(snap.gpu_count.sum()) * 1000
    return {
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "placed": placed,
        "gpu_allocated": (total_gpu - int(snap.gpu_idle.sum())) / total_gpu,
    }


def main(
    traces: Annotated[Path, typer.Option(help="Folder of the openb CSV traces.")] = TRACES,
    policies: Annotated[str, typer.Option(help="Comma-separated placement profiles.")] = "gpu-pack,fgd",
    sizes: Annotated[str, typer.Option(help="Comma-separated cluster sizes (nodes).")] = "1213,5000",
    scale_pods: Annotated[bool, typer.Option(help="Replicate the pods in proportion to the nodes.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    if not traces.is_dir():
        raise typer.BadParameter(f"no openb traces at {traces}", param_hint="--traces")
    nodes = read_nodes(traces / "openb_node_list_gpu_node.csv")
    pods = read_pods(traces / "openb_pod_list_default.csv")
    workload = TargetWorkload.from_pods(pods)
    console = Console(width=120)
    table = Table(title=f"Placer.decide per pod, openb default pods ({platform.machine()}, {os.cpu_count()} cores)")
    for column in ("policy", "nodes", "pods", "median ms", "p90 ms", "p99 ms", "max ms", "placed", "GPU alloc"):
        table.add_column(column, justify="right")
    results = []
    for size in (int(s) for s in sizes.split(",")):
        cluster = replicate(nodes, size)
        arrivals = replicate(pods, round(len(pods) * size / len(nodes))) if scale_pods else pods
        for policy in policies.split(","):
            r = run(cluster, arrivals, policy, workload)
            results.append({"policy": policy, "nodes": size, "pods": len(arrivals), **r})
            table.add_row(policy, str(size), str(len(arrivals)), f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
                          f"{r['max_ms']:.2f}", str(r["placed"]), f"{r['gpu_allocated']:.1%}")
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    typer.run(main)
