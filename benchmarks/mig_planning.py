"""MIG slot choice and repartition planning against the CP-SAT optimum.

For each fleet size and seed, a random demand mix (Dirichlet shares over the A100-80GB profiles
1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb and 7g.80gb) asks for ``--overload`` times the
fleet's memory slices, so that what fits depends on how it is packed.

- **online slot choice**: the requests arrive one by one in random order on empty GPUs; each gets
  ``Fleet.choose`` + ``Fleet.bind`` (instances created on free valid slots) or is refused.
  Measured: slices placed, and the time per request.
- **planner**: a fleet where 40% of the GPUs run one or two instances (never touched) gets
  ``plan`` with its default 2 s limit, and the greedy fallback alone. Measured: slices served
  and planning time.
- **optimum**: the placement-level CP-SAT model (``mig.optimum``) of the same input, solved to
  proven optimality.

    python3 benchmarks/mig_planning.py                          # 8, 64, 256 and 1,000 GPUs, seeds 1..5
    python3 benchmarks/mig_planning.py --sizes 64 --seeds 3 --json mig.json

Prints medians over the seeds.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from mig.catalog import MODELS
from mig.geometry import Instance, Layout, empty
from mig.optimum import optimum_slices
from mig.planner import plan
from mig.slots import DemandMix, Fleet

MODEL = MODELS["A100-80GB"]
PROFILES = ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb")
SIZE = {p: MODEL.profile(p).size for p in PROFILES}
GPUS_PER_NODE = 8


def demand_mix(gpus: int, overload: float, rng: np.random.Generator) -> dict[str, int]:
    shares = rng.dirichlet(np.ones(len(PROFILES)))
    slices = overload * gpus * MODEL.memory_slices
    return {p: int(round(s * slices / SIZE[p])) for p, s in zip(PROFILES, shares)}


def fleet_of(layouts: list[Layout]) -> dict[str, list[Layout]]:
    return {f"node-{k // GPUS_PER_NODE}": layouts[k:k + GPUS_PER_NODE] for k in range(0, len(layouts), GPUS_PER_NODE)}


def partly_busy(gpus: int, rng: np.random.Generator) -> list[Layout]:
    out = []
    for _ in range(gpus):
        layout = empty(MODEL)
        if rng.random() < 0.4:
            for _ in range(int(rng.integers(1, 3))):
                p = MODEL.profile(PROFILES[int(rng.integers(len(PROFILES) - 1))])
                starts = layout.free_starts(p)
                if starts:
                    layout = layout.adding(Instance(p, starts[int(rng.integers(len(starts)))], True))
        out.append(layout)
    return out


def online(gpus: int, demand: dict[str, int], rng: np.random.Generator) -> tuple[int, list[float]]:
    fleet = Fleet(fleet_of([empty(MODEL)] * gpus), mix=DemandMix())
    requests = [p for p, n in demand.items() for _ in range(n)]
    rng.shuffle(requests)
    placed, times = 0, []
    for k, profile in enumerate(requests):
        started = time.perf_counter()
        fleet.mix.observe(profile)
        choice = fleet.choose(profile)
        if choice is not None:
            fleet.bind(f"pod-{k}", choice)
        times.append(time.perf_counter() - started)
        placed += SIZE[profile] if choice is not None else 0
    return placed, times


def one(gpus: int, seed: int, overload: float) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    demand = demand_mix(gpus, overload, rng)
    empty_fleet = fleet_of([empty(MODEL)] * gpus)
    best_online, proven_online = optimum_slices(empty_fleet, demand, time_limit=300)
    placed, times = online(gpus, demand, rng)

    busy_fleet = fleet_of(partly_busy(gpus, rng))
    busy_demand = demand_mix(gpus, overload * 0.6, rng)
    best_plan, proven_plan = optimum_slices(busy_fleet, busy_demand, time_limit=300)
    started = time.perf_counter()
    planned = plan(busy_fleet, busy_demand)
    plan_s = time.perf_counter() - started
    started = time.perf_counter()
    greedy = plan(busy_fleet, busy_demand, solver="greedy")
    greedy_s = time.perf_counter() - started
    return {
        "gpus": gpus, "seed": seed, "proven": float(proven_online and proven_plan),
        "online_ratio": placed / best_online, "online_median_ms": 1000 * float(np.median(times)),
        "online_p99_ms": 1000 * float(np.percentile(times, 99)),
        "plan_ratio": planned.served_slices(SIZE) / best_plan, "plan_s": plan_s, "plan_optimal": float(planned.optimal),
        "greedy_ratio": greedy.served_slices(SIZE) / best_plan, "greedy_s": greedy_s,
        "gpus_changed": len(planned.changed),
    }


def main(
    sizes: Annotated[str, typer.Option(help="Fleet sizes in GPUs.")] = "8,64,256,1000",
    seeds: Annotated[int, typer.Option(help="Seeds 1..N per size.")] = 5,
    overload: Annotated[float, typer.Option(help="Asked slices over the fleet's slices.")] = 1.2,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every run here.")] = None,
) -> None:
    console = Console(width=200)
    runs = []
    for gpus in (int(s) for s in sizes.split(",")):
        for seed in range(1, seeds + 1):
            r = one(gpus, seed, overload)
            runs.append(r)
            console.print(f"{gpus} GPUs, seed {seed}: online {r['online_ratio']:.2%} ({r['online_median_ms']:.3f} ms), "
                          f"plan {r['plan_ratio']:.2%} ({r['plan_s']:.3f} s)", style="dim", highlight=False)
    table = Table(title=f"MIG vs the CP-SAT optimum: medians over seeds 1..{seeds} "
                        f"({platform.machine()}, {platform.python_version()})")
    for column in ("GPUs", "online / optimum", "choice ms (median)", "choice ms (p99)",
                   "plan / optimum", "plan s", "greedy / optimum", "greedy s", "GPUs changed", "all proven"):
        table.add_column(column, justify="right")
    for gpus in sorted({r["gpus"] for r in runs}):
        mine = [r for r in runs if r["gpus"] == gpus]
        med = {k: float(np.median([r[k] for r in mine])) for k in mine[0]}
        table.add_row(f"{gpus:,}", f"{med['online_ratio']:.2%}", f"{med['online_median_ms']:.3f}",
                      f"{med['online_p99_ms']:.3f}", f"{med['plan_ratio']:.2%}", f"{med['plan_s']:.3f}",
                      f"{med['greedy_ratio']:.2%}", f"{med['greedy_s']:.3f}", f"{med['gpus_changed']:.0f}",
                      "yes" if all(r["proven"] for r in mine) else "no")
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    typer.run(main)
