"""Placement decision latency on the openb traces.

Places the openb default pods, in trace order, on the openb GPU nodes and on a larger cluster
made by replicating those nodes, timing every ``Placer.decide`` call (filter + score + device
choice; applying the decision is not timed). Prints median, p90, p99 and max per policy and size.

    python benchmarks/placement.py                       # gpu-pack and fgd at 1,213 and 5,000 nodes
    python benchmarks/placement.py --policies fgd --sizes 5000 --json results.json
"""

from __future__ import annotations

import json
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


def replicate(nodes: list[Node], size: int) -> list[Node]:
    """``size`` nodes: the originals, then copies named ``<name>-r<k>``."""
    out = list(nodes)
    k = 1
    while len(out) < size:
        out += [replace(n, name=f"{n.name}-r{k}") for n in nodes[: size - len(out)]]
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
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    if not traces.is_dir():
        raise typer.BadParameter(f"no openb traces at {traces}", param_hint="--traces")
    nodes = read_nodes(traces / "openb_node_list_gpu_node.csv")
    pods = read_pods(traces / "openb_pod_list_default.csv")
    workload = TargetWorkload.from_pods(pods)
    console = Console()
    table = Table(title=f"Placer.decide per pod, {len(pods)} openb pods ({platform.processor() or platform.machine()})")
    for column in ("policy", "nodes", "median ms", "p90 ms", "p99 ms", "max ms", "placed", "GPU alloc"):
        table.add_column(column, justify="right")
    results = []
    for size in (int(s) for s in sizes.split(",")):
        cluster = replicate(nodes, size)
        for policy in policies.split(","):
            r = run(cluster, pods, policy, workload)
            results.append({"policy": policy, "nodes": size, **r})
            table.add_row(policy, str(size), f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
                          f"{r['max_ms']:.2f}", str(r["placed"]), f"{r['gpu_allocated']:.1%}")
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    typer.run(main)
