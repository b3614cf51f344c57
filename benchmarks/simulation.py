"""Simulator speed and fidelity on the openb traces, and slotwise's default profile beside FGD.

    python3 benchmarks/simulation.py speed                 # one fill run (default trace, x1.3, fgd), 5 times
    python3 benchmarks/simulation.py fidelity              # every policy x 5 traces x seeds 42..51
    python3 benchmarks/simulation.py fidelity --traces-only default --seeds 42..43
    python3 benchmarks/simulation.py beyond                # default vs fgd x 5 traces x seeds 42..51

``speed`` times whole ``run_fill`` calls end to end (trace already read) and prints the median
and the time per arrived pod. ``fidelity`` prints, per trace and policy, the mean GPU allocation
ratio at 50%, 80%, 100% and 130% arrived workload, the FGD paper's Figure 7-11 points, beside
the paper's own mean (fgd_paper_alloc.csv) where it has one, as a Markdown table (``--out`` also
writes it to a file). ``beyond`` runs the default profile and fgd on the same seeds (the same
pods in the same order for both) and prints, per trace, both means at 100% arrived and the
default profile's margin: its mean, and the smallest over the seeds.
"""

from __future__ import annotations

import csv
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
#: The FGD paper's published means (its experiments' results, seeds 42..51, inflation 1.3), per
#: openb trace and policy under slotwise's policy names.
PAPER = Path(__file__).with_name("fgd_paper_alloc.csv")

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


def paper_figures() -> dict[tuple[str, str], dict[str, float]]:
    """(trace, policy) -> the paper's mean allocation (a fraction) at each of ``POINTS``."""
    with PAPER.open(newline="") as f:
        return {(row["trace"], row["policy"]): {point: float(row[point]) / 100 for point in POINTS}
                for row in csv.DictReader(f)}


def _cell(ours: float, paper: float | None) -> str:
    return f"{100 * ours:.1f}%" + (f" ({100 * paper:.1f})" if paper is not None else "")


@app.command()
def fidelity(
    traces: Annotated[Path, typer.Option(help="Folder of the openb CSV traces.")] = TRACES,
    policies: str = POLICIES,
    seeds: str = "42..51",
    traces_only: Annotated[str, typer.Option(help="Comma-separated trace variants.")] = ",".join(VARIANTS),
    workers: int | None = None,
    out: Path | None = None,
) -> None:
    """Mean GPU allocation at 50/80/100/130% arrived, per trace and policy, the paper's in brackets."""
    paper = paper_figures()
    lines = ["| trace | policy | " + " | ".join(POINTS) + " | vs paper @100% | failed pods |", "|---" * (len(POINTS) + 4) + "|"]
    started = time.perf_counter()
    for variant in traces_only.split(","):
        results = sweep(_scenario(traces, variant), policies.split(","), parse_seeds(seeds), workers)
        for policy, _, m in means(results):
            published = paper.get((variant, policy))
            cells = " | ".join(_cell(m[p], published[p] if published else None) for p in POINTS)
            gap = f"{100 * (m['alloc@100%'] - published['alloc@100%']):+.1f}" if published else ""
            lines.append(f"| {variant} | {policy} | {cells} | {gap} | {m['failed pods']:.0f} |")
        console.print(f"{variant} done after {time.perf_counter() - started:.0f} s")
    table = "\n".join(lines)
    console.print(table, highlight=False)
    if out is not None:
        out.write_text(f"Seeds {seeds}, inflation 1.3, `python3 benchmarks/simulation.py fidelity`; "
                       f"the FGD paper's mean in brackets\n\n{table}\n")


@app.command()
def beyond(
    traces: Annotated[Path, typer.Option(help="Folder of the openb CSV traces.")] = TRACES,
    seeds: str = "42..51",
    traces_only: Annotated[str, typer.Option(help="Comma-separated trace variants.")] = ",".join(VARIANTS),
    workers: int | None = None,
) -> None:
    """The default profile beside fgd at 100% arrived: means, and the default's margin per seed."""
    paper = paper_figures()
    runs = parse_seeds(seeds)
    lines = ["| trace | default | fgd | paper's FGD | margin: mean | margin: smallest seed |", "|---" * 6 + "|"]
    margins = {}
    for variant in traces_only.split(","):
        results = sweep(_scenario(traces, variant), ["default", "fgd"], runs, workers)
        at = {(r.policy, r.seed): r.summary()["alloc@100%"] for r in results}
        seed_margins = [at["default", seed] - at["fgd", seed] for seed in runs]
        margins[variant] = statistics.mean(seed_margins)
        default, fgd = (statistics.mean(at[name, seed] for seed in runs) for name in ("default", "fgd"))
        published = paper.get((variant, "fgd"))
        paper_fgd = f"{100 * published['alloc@100%']:.2f}%" if published else ""
        lines.append(f"| {variant} | {100 * default:.2f}% | {100 * fgd:.2f}% | {paper_fgd} | "
                     f"{100 * margins[variant]:+.2f} | {100 * min(seed_margins):+.2f} |")
    console.print("\n".join(lines), highlight=False)
    ahead = [v for v, m in margins.items() if m >= 0.01]
    console.print(f"default is at least 1 point above fgd (mean of seeds {seeds}) on {len(ahead)} of {len(margins)} "
                  f"traces; its smallest mean margin is {100 * min(margins.values()):+.2f} points", highlight=False)


if __name__ == "__main__":
    app()
