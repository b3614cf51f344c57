"""Run one scenario under several policies and seeds: in this process, across local processes,
or on an existing Ray cluster."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Literal

from burst.targets import BurstConfig
from quota.config import QuotaConfig
from scheduler.model.cluster import Node, WorkloadKind
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from simulator.fill import run_fill
from simulator.results import Result
from simulator.timeline import run_timeline
from simulator.traces import Arrival

Mode = Literal["fill", "timeline"]
Run = tuple[str, int, str | None, str | None]  # policy, seed, quota, burst


@dataclass(frozen=True)
class Scenario:
    """Everything a run needs besides its policy and seed; it travels to worker processes."""

    name: str
    nodes: tuple[Node, ...]
    arrivals: tuple[Arrival, ...]
    mode: Mode = "timeline"
    inflation: float = 1.3
    #: Quota configurations to compare (file name, configuration); timeline runs only.
    quotas: tuple[tuple[str, QuotaConfig], ...] = ()
    #: Burst configurations to compare (file name, configuration); timeline runs only.
    bursts: tuple[tuple[str, BurstConfig], ...] = ()
    #: Workload classes (defaults, or an admin's overrides).
    classes: Mapping[WorkloadKind, WorkloadClass] = field(default_factory=lambda: DEFAULT_CLASSES)


def label(policy: str, quota: str | None, burst: str | None) -> str:
    """How a run is named in reports: ``default``, ``default + pools.yaml + burst.yaml``."""
    return " + ".join(part for part in (policy, quota, burst) if part)


def run_one(scenario: Scenario, policy: str, seed: int, progress: Callable[[int], None] | None = None,
            quota: str | None = None, burst: str | None = None) -> Result:
    """One run; with ``quota`` or ``burst`` (names from the scenario's) pods go through that
    quota or may overflow that way, and the result is labelled by :func:`label`."""
    if scenario.mode == "fill":
        pods = [a.pod for a in scenario.arrivals]
        return run_fill(scenario.nodes, pods, policy, seed, scenario.inflation, progress)
    result = run_timeline(scenario.nodes, scenario.arrivals, policy, seed, progress,
                          dict(scenario.quotas)[quota] if quota is not None else None,
                          burst=dict(scenario.bursts)[burst] if burst is not None else None, classes=scenario.classes)
    return replace(result, policy=label(policy, quota, burst), quota=quota, burst=burst)


def parse_seeds(text: str) -> list[int]:
    """``42``, ``1,2,5`` or ``42..51`` (inclusive)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, sep, high = part.strip().partition("..")
            seeds += list(range(int(low), int(high) + 1)) if sep else [int(low)]
    except ValueError:
        raise ValueError(f"seeds: expected 42, 1,2,5 or 42..51, got {text!r}") from None
    if not seeds:
        raise ValueError(f"seeds: no seed in {text!r}")
    return seeds


# One scenario per worker process, sent once when the worker starts rather than with every run.
_worker_scenario: Scenario | None = None


def _init_worker(scenario: Scenario) -> None:
    global _worker_scenario
    _worker_scenario = scenario


def _run_in_worker(policy: str, seed: int, quota: str | None, burst: str | None) -> Result:
    assert _worker_scenario is not None
    return run_one(_worker_scenario, policy, seed, quota=quota, burst=burst)


def _local(scenario: Scenario, runs: list[Run], workers: int) -> Iterator[Result]:
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(scenario,)) as pool:
        futures = [pool.submit(_run_in_worker, *run) for run in runs]
        for future in as_completed(futures):
            yield future.result()


def _ray(scenario: Scenario, runs: list[Run], address: str) -> Iterator[Result]:
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray-address needs Ray: python3 -m pip install 'slotwise[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True, logging_level="WARNING", log_to_driver=False)
    remote = ray.remote(run_one)
    shared = ray.put(scenario)
    pending = [remote.remote(shared, policy, seed, None, quota, burst) for policy, seed, quota, burst in runs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


def sweep(
    scenario: Scenario,
    policies: Sequence[str],
    seeds: Sequence[int],
    workers: int | None = None,
    ray_address: str | None = None,
    on_result: Callable[[Result], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Result]:
    """Every (policy, seed) run, sorted by the order of ``policies`` then seed.

    A single run, or ``workers=1``, runs here (``progress`` then counts pods); otherwise runs go
    to ``workers`` processes (default: one per core) or to the Ray cluster at ``ray_address``,
    and ``on_result`` hears of each finished run.
    """
    quotas = [name for name, _ in scenario.quotas] or [None]
    bursts = [name for name, _ in scenario.bursts] or [None]
    runs = [(policy, seed, quota, burst) for policy in policies for quota in quotas for burst in bursts for seed in seeds]
    workers = min(workers or os.cpu_count() or 1, len(runs))
    if ray_address:
        results: Iterator[Result] = _ray(scenario, runs, ray_address)
    elif workers <= 1:
        results = (run_one(scenario, policy, seed, progress, quota, burst) for policy, seed, quota, burst in runs)
    else:
        results = _local(scenario, runs, workers)
    collected = []
    for result in results:
        collected.append(result)
        if on_result is not None:
            on_result(result)
    rank = {label(p, q, b): i for i, (p, q, b) in enumerate((p, q, b) for p in policies for q in quotas for b in bursts)}
    return sorted(collected, key=lambda r: (rank[r.policy], r.seed))
