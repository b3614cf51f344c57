"""Simulator speed and fidelity on the openb traces, and slotwise's default profile beside FGD.

    python3 benchmarks/simulation.py speed                 # one fill run (default trace, x1.3, fgd), 5 times
    python3 benchmarks/simulation.py fidelity              # every policy x 5 traces x seeds 42..51
    python3 benchmarks/simulation.py fidelity --traces-only default --seeds 42..43
    python3 benchmarks/simulation.py beyond                # default vs fgd x 5 traces x seeds 42..51
    python3 benchmarks/simulation.py headroom              # what stays idle at 100% arrived, and what packing could win

``speed`` times whole ``run_fill`` calls end to end (trace already read) and prints the median
and the time per arrived pod. ``fidelity`` prints, per trace and policy, the mean GPU allocation
ratio at 50%, 80%, 100% and 130% arrived workload, the FGD paper's Figure 7-11 points, beside
the paper's own mean (fgd_paper_alloc.csv) where it has one, as a Markdown table (``--out`` also
writes it to a file). ``beyond`` runs the default profile and fgd on the same seeds (the same
pods in the same order for both) and prints, per trace, both means at 100% arrived and the
default profile's margin: its mean, and the smallest over the seeds. ``headroom`` looks at the
cluster at 100% arrived under the default profile: the whole GPUs left idle, the GPUs its GPU
shares occupy beside an offline packing of the same shares and the fewest they need, and the
ceiling on allocation that leaves.
"""

from __future__ import annotations

import csv
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from ortools.sat.python import cp_model
from rich.console import Console

from scheduler.model.openb import read_nodes
from scheduler.model.resources import MILLI_PER_GPU
from scheduler.model.snapshot import Snapshot
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


def first_fit_decreasing(shares: list[int], size: int = MILLI_PER_GPU) -> int:
    """GPUs that first-fit decreasing fills with ``shares``: offline, seeing them all, largest first."""
    room = np.full(len(shares), size)
    used = 0
    for share in sorted(shares, reverse=True):
        gpu = int(np.argmax(room[: used + 1] >= share))  # the first with room; at worst a new one
        room[gpu] -= share
        used = max(used, gpu + 1)
    return used


def fewest_gpus(shares: list[int], size: int = MILLI_PER_GPU) -> int:
    """The fewest GPUs any packing of ``shares`` needs, exactly: Valério de Carvalho's arc-flow
    model ("Exact solution of bin-packing problems using column generation and branch-and-bound",
    1999), solved by OR-Tools CP-SAT. A GPU is a path from 0 to ``size`` milli-GPU through the fill
    levels its shares reach, one arc per share and a last arc for the room left; the fewest paths
    that carry every share are the answer. Shares come in few sizes, so the graph is small."""
    demand = Counter(shares)
    if not demand:
        return 0
    levels, arcs, todo = {0}, [], [0]
    while todo:
        level = todo.pop()
        for share in demand:
            if level + share <= size:
                arcs.append((level, level + share, share))
                if level + share not in levels:
                    levels.add(level + share)
                    todo.append(level + share)
    model = cp_model.CpModel()
    gpus = model.new_int_var(0, len(shares), "gpus")
    flow = [model.new_int_var(0, demand[share], "") for _, _, share in arcs]
    room_left = {level: model.new_int_var(0, len(shares), "") for level in levels if level < size}
    inflow: dict[int, list] = {level: [] for level in levels | {size}}
    outflow: dict[int, list] = {level: [] for level in levels | {size}}
    carrying: dict[int, list] = {share: [] for share in demand}
    for (start, end, share), arc in zip(arcs, flow):
        outflow[start].append(arc)
        inflow[end].append(arc)
        carrying[share].append(arc)
    for level, arc in room_left.items():
        outflow[level].append(arc)
        inflow[size].append(arc)
    model.add(sum(outflow[0]) == gpus)
    model.add(sum(inflow[size]) == gpus)
    for level in levels - {0, size}:
        model.add(sum(inflow[level]) == sum(outflow[level]))
    for share, count in demand.items():
        model.add(sum(carrying[share]) == count)
    model.minimize(gpus)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = 60
    solver.parameters.num_workers = 1  # the answer must not depend on the machine
    if solver.solve(model) != cp_model.OPTIMAL:
        raise RuntimeError(f"no proven optimum for {len(shares)} shares within a minute")
    return int(solver.value(gpus))


@app.command()
def headroom(
    traces: Annotated[Path, typer.Option(help="Folder of the openb CSV traces.")] = TRACES,
    seeds: str = "42..44",
    traces_only: Annotated[str, typer.Option(help="Comma-separated trace variants.")] = ",".join(VARIANTS),
) -> None:
    """What stays idle at 100% arrived under the default profile, and how far better packing of the
    GPU shares could take it: the GPUs its shares occupy beside first-fit decreasing's for the same
    shares (offline, largest first) and beside the fewest any packing needs. A GPU fewer for the
    shares is a GPU more for the whole-GPU pods that failed. The ceiling is the allocation with
    those shares packed into the fewest GPUs and every other GPU taken whole: no placement of
    them allocates more. Means over the seeds."""
    header = ("| trace | default | fgd | margin | whole GPUs idle | GPUs holding shares | first-fit decreasing | "
              "fewest possible | margin, shares packed as first-fit decreasing | ceiling | ceiling over fgd |")
    lines = [header, "|---" * 11 + "|"]
    short = []
    for variant in traces_only.split(","):
        scenario = _scenario(traces, variant)
        pods = [a.pod for a in scenario.arrivals]
        rows = []
        for seed in parse_seeds(seeds):
            full: dict[str, Snapshot] = {}
            for policy in ("default", "fgd"):
                seen: list[Snapshot] = []
                run_fill(scenario.nodes, pods, policy, seed, scenario.inflation, at_capacity=seen.append)
                full[policy] = seen[0]
            gpus = int((full["default"].gpu_free >= 0).sum())
            alloc = {p: 1 - snap.gpu_free.clip(0).sum() / (MILLI_PER_GPU * gpus) for p, snap in full.items()}
            shared = [a for a in full["default"].assignments.values() if a.pod.gpu is not None and a.pod.gpu.shared]
            shares = [a.pod.gpu.milli for a in shared]  # type: ignore[union-attr]
            holding = len({(a.node, a.gpus) for a in shared})
            fewest = fewest_gpus(shares)
            ceiling = 1 - (fewest - sum(shares) / MILLI_PER_GPU) / gpus
            rows.append((alloc["default"], alloc["fgd"], int((full["default"].gpu_free == MILLI_PER_GPU).sum()), holding,
                         first_fit_decreasing(shares), fewest, ceiling, gpus))
        d, f, idle, holding, ffd, fewest, ceiling, gpus = (statistics.mean(column) for column in zip(*rows))
        margin = 100 * (d - f)
        lines.append(f"| {variant} | {100 * d:.2f}% | {100 * f:.2f}% | {margin:+.2f} | {idle:.0f} | {holding:.0f} | "
                     f"{ffd:.0f} | {fewest:.0f} | {margin + 100 * (holding - ffd) / gpus:+.2f} | "
                     f"{100 * ceiling:.2f}% | {100 * (ceiling - f):+.2f} |")
        if ceiling - f < 0.01:
            short.append(variant)
    console.print(f"seeds {seeds}, inflation 1.3, at 100% arrived", highlight=False)
    console.print("\n".join(lines), highlight=False)
    console.print(f"traces where no placement of the default profile's shares allocates 1 point more than fgd: "
                  f"{', '.join(short) or 'none'}", highlight=False)


if __name__ == "__main__":
    app()
