"""Gang planning latency: one all-or-nothing plan for a 64-pod gang on 5,000 nodes.

The cluster is the synthetic one (A100, A10, T4 and CPU nodes in racks of eight, two zones)
scaled to ``--nodes``, filled to about ``--fill`` of its GPUs with 1-, 2- and 4-GPU pods placed
by the default profile, so that the planner must search. Each timed call is
``plan_gang`` (filters, per-node room, domain choice, speculative assignment on a snapshot copy);
the topology graph is built once per snapshot and not timed.

    python3 benchmarks/gang.py                       # 64 pods of 4 GPUs and of 8 GPUs, 5,000 nodes
    python3 benchmarks/gang.py --nodes 1000 --repeats 200

Target (issue 5): median and p99 <= 50 ms for a 64-pod gang on 5,000 nodes, 2 cores.
"""

from __future__ import annotations

import platform
import time
from typing import Annotated

import numpy as np
import typer

from scheduler.gang.groups import Gang
from scheduler.gang.planner import GangPlan, plan_gang
from scheduler.gang.topology import Topology
from scheduler.model.cluster import GpuDemand, Pod
from scheduler.model.resources import CPU, GPU, MEMORY, Resources
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile
from simulator.generate import DEFAULT_NODE_TYPES, GIB, synthetic_cluster


def _cluster(count: int, fill: float, seed: int) -> Snapshot:
    total = sum(t.count for t in DEFAULT_NODE_TYPES)
    types = tuple(type(t)(t.prefix, round(t.count * count / total), t.cpu_cores, t.memory_gib, t.gpus, t.gpu_model)
                  for t in DEFAULT_NODE_TYPES)
    snap = Snapshot(synthetic_cluster(types))
    rng = np.random.default_rng(seed)
    placer = Placer(build_profile("default", rng=rng))
    target = fill * snap.gpu_count.sum()
    used = 0
    k = 0
    while used < target:
        gpus = int(rng.choice([1, 2, 4]))
        pod = Pod(f"bg-{k}", requests=Resources({CPU: 4000 * gpus, MEMORY: 32 * GIB * gpus, GPU: gpus}), gpu=GpuDemand(gpus))
        decision = placer.decide(snap, pod)
        if isinstance(decision, Placement):
            snap.assign(pod, decision.node_index, decision.gpus)
        used += gpus
        k += 1
    return snap


def main(
    nodes: Annotated[int, typer.Option(help="Cluster size.")] = 5000,
    members: Annotated[int, typer.Option(help="Pods in the gang.")] = 64,
    fill: Annotated[float, typer.Option(help="Share of GPUs taken before planning.")] = 0.6,
    repeats: Annotated[int, typer.Option(help="Timed plans per gang shape.")] = 100,
    seed: Annotated[int, typer.Option()] = 1,
) -> None:
    snap = _cluster(nodes, fill, seed)
    topology = Topology(snap)
    placer = Placer(build_profile("default", rng=np.random.default_rng(seed)))
    print(f"{len(snap)} nodes, {int(snap.gpu_count.sum())} GPUs, {len(snap.assignments)} pods running "
          f"({platform.machine()}, Python {platform.python_version()})")
    print("| gang | plan | nodes used | spread | median ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for gpus in (4, 8):
        pods = tuple(Pod(f"w{k}", requests=Resources({CPU: 8000 * gpus, MEMORY: 64 * GIB * gpus, GPU: gpus}),
                         gpu=GpuDemand(gpus)) for k in range(members))
        gang = Gang("bench/gang", pods, members)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            decision = plan_gang(placer, snap, gang, topology)
            times.append((time.perf_counter() - started) * 1000)
        outcome = (f"placed | {len(decision.nodes)} | {decision.level.name.lower()}" if isinstance(decision, GangPlan)
                   else "none | 0 | -")
        print(f"| {members} x {gpus} GPUs | {outcome} | {np.median(times):.2f} | {np.percentile(times, 99):.2f} | "
              f"{max(times):.2f} |")


if __name__ == "__main__":
    typer.run(main)
