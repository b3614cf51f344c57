"""``slotwise place`` and ``slotwise policies``: the placement engine on a cluster's pending pods."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from slotwise.console import failure, make_console

console = make_console()


def policies() -> None:
    """List the placement policies a profile can use."""
    from scheduler.placement.profile import profile_names

    for name in profile_names():
        console.print(name)


def place(
    nodes: Annotated[Path | None, typer.Option(help="Nodes: kubectl JSON (NodeList) or openb CSV. Default: a synthetic cluster.")] = None,
    pods: Annotated[Path | None, typer.Option(help="Pods: kubectl JSON (PodList) or openb CSV. Default: a synthetic workload.")] = None,
    policy: Annotated[str, typer.Option(help="Placement profile or policy (slotwise policies lists them).")] = "default",
    seed: Annotated[int, typer.Option(help="Seed for the synthetic workload and random policies.")] = 0,
    count: Annotated[int, typer.Option(min=1, help="How many synthetic pods to generate.")] = 300,
    show: Annotated[int, typer.Option(min=0, help="How many decisions to print.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print every decision as a JSON line instead.")] = False,
) -> None:
    """Place pending pods one by one on a cluster and report where they went and why not."""
    from scheduler.model.resources import MILLI_PER_GPU
    from scheduler.model.snapshot import Snapshot
    from scheduler.model.sources import read_nodes, read_pods
    from scheduler.placement.decision import Placement
    from scheduler.placement.engine import Placer
    from scheduler.placement.profile import build_profile
    from scheduler.placement.workload import TargetWorkload
    from simulator.generate import synthetic_cluster, synthetic_workload

    try:
        node_list = read_nodes(nodes) if nodes else synthetic_cluster()
        pod_list = read_pods(pods) if pods else synthetic_workload(count, seed)
        snap = Snapshot(node_list, pod_list)
        pending = [p for p in pod_list if p.node_name is None]
        placer = Placer(build_profile(policy, seed=seed, workload=TargetWorkload.from_pods(pod_list) if pod_list else None))
    except (ValueError, OSError) as exc:
        raise failure(console, exc) from None

    decisions, started = [], time.perf_counter()
    for pod in pending:
        decision = placer.decide(snap, pod)
        if isinstance(decision, Placement):
            snap.assign(pod, decision.node_index, decision.gpus)
        decisions.append(decision)
    elapsed = time.perf_counter() - started

    if as_json:
        for d in decisions:
            placed = isinstance(d, Placement)
            record = {"pod": d.pod.key, "node": d.node if placed else None, "gpus": list(d.gpus) if placed else [],
                      "reason": None if placed else d.message}
            typer.echo(json.dumps(record))
        return
    for d in decisions[:show]:
        console.print(str(d), highlight=False)
    placed = [d for d in decisions if isinstance(d, Placement)]
    total_gpu = int(snap.gpu_count.sum()) * MILLI_PER_GPU
    table = Table(title=f"{len(pending)} pods on {len(snap)} nodes, profile {policy}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("placed", f"{len(placed)}")
    table.add_row("unschedulable", f"{len(decisions) - len(placed)}")
    table.add_row("GPU allocated", f"{(total_gpu - int(snap.gpu_idle.sum())) / max(total_gpu, 1):.1%}")
    table.add_row("GPUs wholly idle", f"{int((snap.gpu_free == MILLI_PER_GPU).sum())}")
    table.add_row("nodes in use", f"{len({a.node for a in snap.assignments.values()})}")
    table.add_row("mean decision time", f"{1000 * elapsed / max(len(decisions), 1):.2f} ms")
    console.print(table)
    reasons = Counter(d.message.split(": ", 1)[-1] for d in decisions if not isinstance(d, Placement))
    for reason, n in reasons.most_common(5):
        console.print(f"{n} pods: {reason}", highlight=False)
