"""Simulator speed and fidelity on the openb traces.

    python3 benchmarks/simulation.py speed                 # one fill run (default trace, x1.3, fgd), 5 times
    python3 benchmarks/simulation.py fidelity              # every policy x 5 traces x seeds 42..51
    python3 benchmarks/simulation.py fidelity --traces-only default --seeds 42..43

``speed`` times whole ``run_fill`` calls end to end (trace already read) and prints the median
and the time per arrived pod. ``fidelity`` prints, per trace and policy, the mean GPU allocation
ratio at 50%, 80%, 100% and 130% arrived workload, the FGD paper's Figure 7-11 points, as a
Markdown table (``--out`` also writes it to a file).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from scheduler.model.openb import read_nodes
from simulator.fill import run_fill
from simulator.report import means
from simulator.sweep import Scenario, parse_seeds, sweep
from simulator.traces import read_trace

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "openb"
VARIANTS = ("default", "cpu050", "gpushare40", "multigpu30", "gpuspec20")
POLICIES = "default,gpu-pack,fgd,bestfit,dotprod,gpu-clustering,gpu-packing,random"
POINTS = ("alloc@50%", "alloc@80%", "alloc@100%", "alloc@130%")

app = typer.Typer(add_completion=False)
console = Console(width=120)


def _scenario(traces: Path, variant: str) -> Scenario:
    if not traces.is_dir():
        raise typer.BadParameter(f"no openb traces at {traces}", param_hint="--traces")
    nodes = tuple(read_nodes(traces / "openb_node_list_gpu_node.csv"))
    arrivals = tuple(read_trace(traces / f"openb_pod_list_{variant}.csv"))
    return Scenario(variant, nodes, arrivals, "fill", 1.3)


@app.command()
def speed(
    traces: Annotated[Path, typer.Option(help="Folder of the openb CSV traces.")] = TRACES,
    policy: str = "fgd",
    repeat: int = 5,
) -> None:
    """Time one fill experiment (openb default, inflation 1.3, seed 42) end to end."""
    scenario = _scenario(traces, "default")
    pods = [a.pod for a in scenario.arrivals]
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run_fill(scenario.nodes, pods, policy, 42, 1.3)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    console.print(f"fill, openb default x1.3, {policy}, seed 42, {result.pods} arrivals on {len(scenario.nodes)} nodes "
                  f"({os.cpu_count()} cores): median {median:.2f} s over {repeat} runs "
                  f"(min {min(seconds):.2f}, max {max(seconds):.2f}), {1e3 * median / result.pods:.3f} ms per pod",
                  highlight=False)


@app.command()
def fidelity(
    traces: Annotated[Path, typer.Option(help="Folder of the openb CSV traces.")] = TRACES,
    policies: str = POLICIES,
    seeds: str = "42..51",
    traces_only: Annotated[str, typer.Option(help="Comma-separated trace variants.")] = ",".join(VARIANTS),
    workers: int | None = None,
    out: Path | None = None,
) -> None:
    """Mean GPU allocation at 50/80/100/130% arrived, per trace and policy."""
    lines = ["| trace | policy | " + " | ".join(POINTS) + " | failed pods |", "|---" * (len(POINTS) + 3) + "|"]
    started = time.perf_counter()
    for variant in traces_only.split(","):
        results = sweep(_scenario(traces, variant), policies.split(","), parse_seeds(seeds), workers)
        for policy, _, m in means(results):
            cells = " | ".join(f"{100 * m[p]:.1f}%" for p in POINTS)
            lines.append(f"| {variant} | {policy} | {cells} | {m['failed pods']:.0f} |")
        console.print(f"{variant} done after {time.perf_counter() - started:.0f} s")
    table = "\n".join(lines)
    console.print(table, highlight=False)
    if out is not None:
        out.write_text(f"Seeds {seeds}, inflation 1.3, `python3 benchmarks/simulation.py fidelity`\n\n{table}\n")


if __name__ == "__main__":
    app()
