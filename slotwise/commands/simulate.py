"""``slotwise simulate``: what-if runs from the command line."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from simulator.modes import Mode
from slotwise.console import failure, make_console

# The command imports what it needs when it runs (numpy, pydantic, the placement engine, the
# simulator, matplotlib), so that --help loads none of them.
if TYPE_CHECKING:
    from simulator.results import Result
    from simulator.sweep import Scenario

console = make_console()
T = TypeVar("T")


def _configs(files: str | None, load: Callable[[str], T]) -> tuple[tuple[str, T], ...]:
    """(file name, configuration) for each of ``a.yaml,b.yaml``; a bad file is named."""
    from burst.targets import BurstConfigError
    from quota.config import QuotaConfigError

    out = []
    for name in (f.strip() for f in (files or "").split(",") if f.strip()):
        try:
            out.append((Path(name).name, load(Path(name).read_text())))
        except (QuotaConfigError, BurstConfigError) as exc:
            raise ValueError(f"{name}: {exc}") from None
    return tuple(out)


def _scenario(trace: Path | None, nodes: Path | None, added: str | None, mode: Mode | None, inflation: float,
              count: int, seed: int, quota: str | None, burst: str | None = None,
              gang_burst: int | None = None, classes: Path | None = None) -> Scenario:
    from burst.targets import burst_from_yaml
    from quota.config import config_from_yaml
    from scheduler.model.sources import read_nodes
    from scheduler.placement.classes import DEFAULT_CLASSES, classes_from_yaml
    from simulator.generate import gang_burst_arrivals, synthetic_arrivals, synthetic_cluster
    from simulator.sweep import Scenario
    from simulator.traces import read_trace
    from simulator.whatif import add_nodes, parse_additions

    node_list = read_nodes(nodes) if nodes else synthetic_cluster()
    if added:
        node_list = add_nodes(node_list, parse_additions(added))
    node_list = tuple(node_list)
    quotas = _configs(quota, config_from_yaml)
    bursts = _configs(burst, burst_from_yaml)
    if (quotas or bursts) and mode == "fill":
        raise ValueError("--quota and --burst need a timeline run: pods must leave for capacity to be lent, "
                         "reclaimed or overflowed")
    timeline = "timeline" if quotas or bursts else None
    kinds = classes_from_yaml(classes.read_text()) if classes else DEFAULT_CLASSES
    if trace is not None:
        # A trace replays the FGD paper's method unless asked for a timeline (or quota, or overflow).
        return Scenario(trace.stem, node_list, tuple(read_trace(trace)), mode or timeline or "fill",
                        inflation, quotas, bursts, kinds)
    if gang_burst:
        return Scenario(f"gang-burst-{gang_burst}", node_list, tuple(gang_burst_arrivals(gang_burst)), "timeline",
                        inflation, quotas, bursts, kinds)
    return Scenario(f"generated-{count}-seed{seed}", node_list, tuple(synthetic_arrivals(count, seed)),
                    mode or "timeline", inflation, quotas, bursts, kinds)


def _projects_table(results: list[Result]) -> Table:
    """Per project, each run label's mean over seeds of wait p99, borrowed GPUs and preemptions."""
    from simulator.report import mean_and_spread
    from simulator.results import TimelineResult, format_figure

    figures: dict[str, dict[str, list[dict[str, float | None]]]] = {}
    for r in results:
        if isinstance(r, TimelineResult):
            for project, f in r.projects().items():
                figures.setdefault(project, {}).setdefault(r.policy, []).append(f)
    labels = list(dict.fromkeys(r.policy for r in results))
    table = Table(title="Per project (means over seeds): wait p99 / mean GPUs / borrowed GPUs / preemptions / "
                        "burst cost")
    table.add_column("project")
    for label in labels:
        table.add_column(label, justify="right")
    for project, by_label in figures.items():
        cells = []
        for label in labels:
            stats = mean_and_spread(by_label.get(label, []))
            cells.append(" / ".join(format_figure(key, stats[key][0] if key in stats else None) for key in
                                    ("wait p99 s", "mean GPUs", "borrowed GPUs", "preemptions", "burst cost")))
        table.add_row(project, *cells)
    return table


def _means_table(results: list[Result], title: str) -> Table:
    """One row per figure and one column per policy, so that policies compare side by side."""
    from simulator.report import means
    from simulator.results import figure_name, format_figure

    rows = means(results)
    table = Table(title=title)
    table.add_column("mean over seeds")
    for policy, n, _ in rows:
        table.add_column(f"{policy} ({n})", justify="right")
    for key in dict.fromkeys(k for _, _, m in rows for k in m):
        table.add_row(figure_name(key), *(format_figure(key, m.get(key)) for _, _, m in rows))
    return table


def _check_numbers(inflation: float, count: int, workers: int | None, workload_seed: int,
                   gang_burst: int | None) -> None:
    """Refuse numeric options out of range, naming the option."""
    if not (math.isfinite(inflation) and inflation > 0):
        raise ValueError(f"--inflation must be a positive number (1.3: 130% of GPU capacity), got {inflation}")
    for name, value, least in (("count", count, 1), ("workers", workers, 1), ("workload-seed", workload_seed, 0),
                               ("gang-burst", gang_burst, 1)):
        if value is not None and value < least:
            raise ValueError(f"--{name} must be {least} or more, got {value}")


def _gang_table(scenario: Scenario, policies: list[str], seed: int, modes: list[str]) -> Table:
    """Gang figures per policy and mode, side by side."""
    from simulator.gangs import compare_gang_modes

    figures = {(p, m): f for p in policies
               for m, f in compare_gang_modes(scenario.nodes, scenario.arrivals, p, seed, modes, scenario.classes).items()}
    table = Table(title=f"Gangs in {scenario.name} (seed {seed})")
    table.add_column("")
    for policy, mode in figures:
        table.add_column(f"{policy}, gang-{mode}", justify="right")
    for key in next(iter(figures.values())):
        table.add_row(key, *(f"{f[key]:,}" for f in figures.values()))
    return table


def simulate(
    trace: Annotated[Path | None, typer.Option(help="Pods: openb CSV, or slotwise's native CSV/JSONL trace. Default: a generated job/notebook/serving workload.")] = None,
    nodes: Annotated[Path | None, typer.Option(help="Nodes: openb CSV or kubectl JSON (NodeList). Default: a synthetic cluster.")] = None,
    add_nodes_: Annotated[str | None, typer.Option("--add-nodes", help="What if the cluster had more nodes: MODEL=COUNT,... copies of a node with that GPU model ('cpu': without GPUs).")] = None,
    policy: Annotated[str, typer.Option(help="Profiles or policies to compare, comma-separated (slotwise policies lists them).")] = "default",
    seeds: Annotated[str, typer.Option(help="Seeds: 42, 1,2,5 or 42..51.")] = "42",
    mode: Annotated[Mode | None, typer.Option(help="fill (arrivals only, inflated; the FGD paper's method) or timeline (arrivals and departures). Default: fill for a trace, timeline for a generated workload.")] = None,
    inflation: Annotated[float, typer.Option(help="fill: grow the workload to this multiple of the cluster's GPU capacity.")] = 1.3,
    count: Annotated[int, typer.Option(help="Generated workload: how many pods.")] = 1000,
    workload_seed: Annotated[int, typer.Option(help="Generated workload: its seed.")] = 42,
    out: Annotated[Path, typer.Option(help="Folder for the report, CSV, JSON and plots.")] = Path("slotwise-simulation"),
    workers: Annotated[int | None, typer.Option(help="Processes for a sweep (default: one per core; 1 runs here).")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Run the sweep on this Ray cluster (e.g. ray://head:10001, or 'auto').")] = None,
    quota: Annotated[str | None, typer.Option(help="Admit pods through project pools from this quota YAML; several (a.yaml,b.yaml) are compared on the same workload, beside a run without pools.")] = None,
    burst: Annotated[str | None, typer.Option(help="Let waiting work overflow as this burst YAML says (budgets from --quota); several are compared, beside a run without overflow.")] = None,
    classes: Annotated[Path | None, typer.Option(help="Workload class overrides (YAML, e.g. serving: {gpu_pack: true}).")] = None,
    gangs: Annotated[str | None, typer.Option(help="aware, unaware or aware,unaware: run the workload with gangs placed whole and/or member by member (gang-unaware), and print completed gangs and GPU-hours held idle, instead of the report.")] = None,
    gang_burst: Annotated[int | None, typer.Option(help="Instead of the generated workload: this many 4-worker 8-GPU training gangs submitted at once, members interleaved.")] = None,
) -> None:
    """Run what-if simulations through the live placement code and write a report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from scheduler.placement.profile import profile_names
    from simulator.gangs import GANG_MODES
    from simulator.report import earlier_report, write_report
    from simulator.sweep import compared, connect_ray, parse_seeds, sweep

    try:
        policies = [p.strip() for p in policy.split(",") if p.strip()]
        unknown = [p for p in policies if p not in profile_names()]
        if unknown or not policies:
            raise ValueError(f"unknown placement policy {', '.join(map(repr, unknown)) or repr(policy)}; "
                             f"choose from {', '.join(profile_names())}")
        seed_list = parse_seeds(seeds)
        _check_numbers(inflation=inflation, count=count, workers=workers, workload_seed=workload_seed,
                       gang_burst=gang_burst)
        scenario = _scenario(trace, nodes, add_nodes_, mode, inflation, count, workload_seed, quota, burst, gang_burst,
                             classes)
        if not scenario.arrivals or not scenario.nodes:
            raise ValueError("nothing to simulate: no pods or no nodes")
        gang_modes = [m.strip() for m in (gangs or "").split(",") if m.strip()]
        if any(m not in GANG_MODES for m in gang_modes) or (gangs is not None and not gang_modes):
            raise ValueError(f"--gangs takes {', '.join(GANG_MODES)} or both, comma-separated; got {gangs!r}")
        if gang_modes and (scenario.quotas or scenario.bursts):
            raise ValueError("--gangs compares placement alone; leave out --quota and --burst")
        if not gang_modes:
            earlier_report(out)  # refused now, before the runs, if --out holds anything else
            if ray_address:
                connect_ray(ray_address)
    except (ValueError, OSError) as exc:
        raise failure(console, exc) from None
    if gang_modes:
        try:
            console.print(_gang_table(scenario, policies, seed_list[0], gang_modes))
        except ValueError as exc:
            raise failure(console, exc) from None
        return

    quota_runs, burst_runs = compared(scenario)
    runs = len(policies) * len(seed_list) * len(quota_runs) * len(burst_runs)
    console.print(f"{scenario.mode} run of {scenario.name}: {len(scenario.arrivals)} pods on {len(scenario.nodes)} nodes, "
                  f"{runs} run(s) ({', '.join(policies)} x seeds {seeds})", highlight=False)
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            if (runs == 1 or workers == 1) and not ray_address:
                task = bar.add_task("pods", total=None)
                results = sweep(scenario, policies, seed_list, workers=1, progress=lambda n: bar.advance(task, n))
            else:
                task = bar.add_task("runs", total=runs)
                results = sweep(scenario, policies, seed_list, workers, ray_address, on_result=lambda _: bar.advance(task))
    except ValueError as exc:  # a trace without times asked for a timeline, and the like
        raise failure(console, exc) from None
    elapsed = time.perf_counter() - started

    config = {"scenario": scenario.name, "mode": scenario.mode, "pods": len(scenario.arrivals),
              "nodes": len(scenario.nodes), "policies": ",".join(policies), "seeds": seeds}
    if add_nodes_:
        config["added nodes"] = add_nodes_
    if quota:
        config["quota"] = ",".join(name for name, _ in scenario.quotas)
    if burst:
        config["burst"] = ",".join(name for name, _ in scenario.bursts)
    if scenario.mode == "fill":
        config["inflation"] = inflation
    title = f"slotwise simulation: {scenario.name} ({scenario.mode})"
    files = write_report(results, out, title, config)
    console.print(_means_table(results, f"Means over seeds, {elapsed:.1f} s"))
    if scenario.quotas or scenario.bursts:
        console.print(_projects_table(results))
    console.print(f"report: {out / 'report.html'} ({len(files)} files in {out})", highlight=False)
