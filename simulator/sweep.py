"""Run one scenario under several policies and seeds: in this process, across local processes,
or on an existing Ray cluster."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace

from burst.targets import BurstConfig
from quota.config import QuotaConfig
from scheduler.model.cluster import Node, WorkloadKind
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from simulator.fill import run_fill
from simulator.modes import Mode
from simulator.results import Result
from simulator.timeline import run_timeline
from simulator.traces import Arrival

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


#: How the run beside compared quota or burst files, with none of them, is named.
NO_QUOTA, NO_BURST = "no quota", "no overflow"


def label(policy: str, quota: str | None, burst: str | None) -> str:
    """How a run is named in reports: ``default``, ``default + pools.yaml + burst.yaml``."""
    return " + ".join(part for part in (policy, quota, burst) if part)


def compared(scenario: Scenario) -> tuple[list[str | None], list[str | None]]:
    """The quota and burst names each policy and seed runs with. Compared files get the run
    without any as a baseline; with burst files, the quota files supply budgets, so the
    baseline is no overflow alone."""
    quotas: list[str | None] = [name for name, _ in scenario.quotas]
    bursts: list[str | None] = [name for name, _ in scenario.bursts]
    if bursts:
        bursts.insert(0, NO_BURST)
    elif quotas:
        quotas.insert(0, NO_QUOTA)
    return quotas or [None], bursts or [None]


def run_one(scenario: Scenario, policy: str, seed: int, progress: Callable[[int], None] | None = None,
            quota: str | None = None, burst: str | None = None) -> Result:
    """One run; with ``quota`` or ``burst`` (names from the scenario's) pods go through that
    quota or may overflow that way (:data:`NO_QUOTA`, :data:`NO_BURST`: neither), and the result
    is labelled by :func:`label`."""
    if scenario.mode == "fill":
        pods = [a.pod for a in scenario.arrivals]
        return run_fill(scenario.nodes, pods, policy, seed, scenario.inflation, progress)
    quotas, bursts = dict(scenario.quotas), dict(scenario.bursts)
    result = run_timeline(scenario.nodes, scenario.arrivals, policy, seed, progress,
                          quotas[quota] if quota in quotas else None,
                          burst=bursts[burst] if burst in bursts else None, classes=scenario.classes)
    return replace(result, policy=label(policy, quota, burst), quota=quota, burst=burst)


def _seed_range(part: str, text: str) -> range:
    low, sep, high = part.strip().partition("..")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise ValueError(f"seeds: expected 42, 1,2,5 or 42..51, got {text!r}") from None
    if first > last:
        raise ValueError(f"seeds: {part.strip()!r} runs backwards; write {last}..{first}")
    return range(first, last + 1)


def parse_seeds(text: str) -> list[int]:
    """``42``, ``1,2,5`` or ``42..51`` (inclusive): distinct seeds, none negative."""
    seeds = [seed for part in text.split(",") for seed in _seed_range(part, text)]
    if any(s < 0 for s in seeds):
        raise ValueError(f"seeds: {min(seeds)} is negative; seeds are 0 or more")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds: {text!r} names a seed twice")
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


def _reachable(address: str, timeout: float = 3.0) -> bool:
    """Whether something listens at ``host:port`` (``ray://`` or not): Ray itself retries a dead
    address for minutes before giving up."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return True  # "auto", "local" or a form only Ray reads: Ray finds out
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout).close()
    except OSError:
        return False
    return True


def connect_ray(address: str) -> None:
    """Join the Ray cluster at ``address``, or raise ValueError saying why not and what to do."""
    try:
        import ray
    except ImportError:
        raise ValueError("--ray-address needs Ray: python3 -m pip install 'slotwise[ray]'") from None
    address = os.environ.get("RAY_ADDRESS") or address  # as Ray does: the variable wins
    missing = (f"no Ray cluster at {address!r}: start one with 'ray start --head' (its workers need slotwise) "
               "and pass its address, or leave out --ray-address to run on local processes")
    if not _reachable(address):
        raise ValueError(missing)
    try:
        ray.init(address=address, ignore_reinit_error=True, logging_level="WARNING", log_to_driver=False)
    except ConnectionError:
        raise ValueError(missing) from None


def _ray(scenario: Scenario, runs: list[Run]) -> Iterator[Result]:
    import ray

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
    quotas, bursts = compared(scenario)
    runs = [(policy, seed, quota, burst) for policy in policies for quota in quotas for burst in bursts for seed in seeds]
    workers = min(workers or os.cpu_count() or 1, len(runs))
    if ray_address:
        connect_ray(ray_address)  # here, not when the first result is asked for, so that it fails first
        results: Iterator[Result] = _ray(scenario, runs)
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
