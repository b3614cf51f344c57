"""What-if for MIG: the same job stream on the same GPUs under four ways of sharing them.

- ``whole``: no MIG; every job takes a whole GPU.
- ``static``: each GPU is partitioned once, by the planner for the expected mix, and never again.
- ``dynamic``: starts as ``static``; whenever jobs wait, the planner repartitions wholly free
  GPUs for the waiting demand (mig-manager's way: a changed GPU is unavailable for
  ``reconfigure_s`` while it is reconfigured, and GPUs with a running instance are never touched).
- ``slots``: instances created one by one on any free valid slot as jobs arrive, by slot choice
  (an NVML-driven partitioner's way); shown for comparison.

Jobs ask a profile kind (``2g``, ``3g``, ``4g``, resolved on the GPU model), arrive as a Poisson
stream and run for exponential durations; a job that cannot start waits in arrival order (later
jobs that fit may start first). Reported: jobs started by the horizon, mean wait, slice
utilisation (memory slices jobs asked for, busy, over all slices, time-averaged: a 2g job on a
whole GPU counts 2 of 8) and repartitions (GPUs reconfigured, or instances created for ``slots``).
The clock is simulated and every random draw comes from the seed.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from mig.catalog import GpuModel, profile_for_kind
from mig.geometry import Layout, empty
from mig.planner import plan
from mig.slots import DemandMix, Fleet

MODES = ("whole", "static", "dynamic", "slots")
#: The seed platform's A100 instance types (2g.10gb, 3g.20gb, 4g.40gb), as kinds, in equal shares.
SEED_MIX = {"2g": 1 / 3, "3g": 1 / 3, "4g": 1 / 3}
KINDS = ("1g", "2g", "3g", "4g", "7g")


@dataclass(frozen=True, slots=True)
class MigJob:
    name: str
    arrival: float  # seconds
    duration: float  # seconds
    kind: str  # "3g"


@dataclass(frozen=True, slots=True)
class Outcome:
    mode: str
    jobs: int
    served: int  # started by the horizon
    mean_wait_h: float  # of the started jobs
    utilisation: float  # slices asked by running jobs / all slices, time-averaged
    repartitions: int


class _Event(IntEnum):  # at equal times: departures free capacity first
    DEPARTURE = 0
    RECONFIGURED = 1
    ARRIVAL = 2


def random_mix(seed: int, kinds: tuple[str, ...] = KINDS) -> dict[str, float]:
    """A generated demand mix: Dirichlet shares over profile kinds."""
    shares = np.random.default_rng(seed).dirichlet(np.ones(len(kinds)))
    return {k: float(s) for k, s in zip(kinds, shares)}


def generate_jobs(count: int, mix: Mapping[str, float], model: GpuModel, gpus: int, *, load: float = 1.1,
                  mean_duration_h: float = 4.0, seed: int = 0) -> list[MigJob]:
    """``count`` jobs whose asked slices, on average, are ``load`` times the ``gpus``' slices."""
    rng = np.random.default_rng(seed)
    kinds = sorted(mix)
    p = np.array([mix[k] for k in kinds]) / sum(mix.values())
    mean_size = sum(pi * profile_for_kind(model, k).size for k, pi in zip(kinds, p))
    duration = mean_duration_h * 3600
    rate = load * gpus * model.memory_slices / (mean_size * duration)  # arrivals per second
    arrivals = np.cumsum(rng.exponential(1 / rate, count))
    durations = rng.exponential(duration, count)
    picks = rng.choice(len(kinds), size=count, p=p)
    return [MigJob(f"job-{i}", float(a), float(d), kinds[k]) for i, (a, d, k) in enumerate(zip(arrivals, durations, picks))]


def static_layouts(model: GpuModel, gpus: int, mix: Mapping[str, float]) -> list[Layout]:
    """How an admin would partition the GPUs once: the plan for the mix's share of all slices."""
    sizes = {k: profile_for_kind(model, k) for k in mix}
    total = sum(mix.values())
    slices = gpus * model.memory_slices
    demand = {sizes[k].name: int(np.ceil(share / total * slices / sizes[k].size)) for k, share in mix.items()}
    result = plan({"n": [empty(model)] * gpus}, demand, time_limit=5.0)
    return [g.after for g in result.gpus]


class _Run:
    def __init__(self, mode: str, jobs: list[MigJob], model: GpuModel, nodes: int, gpus_per_node: int,
                 mix: Mapping[str, float], reconfigure_s: float, horizon: float):
        self.mode, self.model, self.horizon, self.reconfigure_s = mode, model, horizon, reconfigure_s
        self.jobs = jobs
        self.profiles = {k: profile_for_kind(model, k) for k in {j.kind for j in jobs} | set(mix)}
        gpus = nodes * gpus_per_node
        self.capacity = gpus * model.memory_slices
        self.free_whole = gpus
        start = static_layouts(model, gpus, mix) if mode in ("static", "dynamic") else [empty(model)] * gpus
        layout_of = iter(start)
        self.fleet = Fleet({f"node-{n}": [next(layout_of) for _ in range(gpus_per_node)] for n in range(nodes)},
                           fixed=mode != "slots", mix=DemandMix(initial=(self.profiles[k].name for k in mix)))
        self.heap: list[tuple[float, int, int, object]] = []
        self.sequence = itertools.count()
        self.waiting: list[MigJob] = []
        self.reconfiguring: dict[tuple[str, int], Layout] = {}
        self.now = 0.0
        self.busy_slices = 0
        self.area = 0.0  # integral of busy asked slices over time
        self.waits: list[float] = []
        self.repartitions = 0

    def push(self, time: float, kind: _Event, payload: object) -> None:
        heapq.heappush(self.heap, (time, kind, next(self.sequence), payload))

    def run(self) -> Outcome:
        for job in self.jobs:
            self.push(job.arrival, _Event.ARRIVAL, job)
        while self.heap and self.heap[0][0] <= self.horizon:
            time, kind, _, payload = heapq.heappop(self.heap)
            self.area += self.busy_slices * (time - self.now)
            self.now = time
            if kind == _Event.ARRIVAL:
                self.waiting.append(payload)  # type: ignore[arg-type]
                self.fleet.mix.observe(self.profiles[payload.kind].name)  # type: ignore[attr-defined]
            elif kind == _Event.DEPARTURE:
                self.finish(payload)  # type: ignore[arg-type]
            else:
                node, index = payload  # type: ignore[misc]
                self.fleet.set_layout(node, index, self.reconfiguring.pop((node, index)))
            self.dispatch()
        self.area += self.busy_slices * (self.horizon - self.now)
        return Outcome(self.mode, len(self.jobs), len(self.waits), float(np.mean(self.waits)) / 3600 if self.waits else 0.0,
                       self.area / (self.capacity * self.horizon), self.repartitions)

    def start(self, job: MigJob) -> bool:
        profile = self.profiles[job.kind]
        if self.mode == "whole":
            if not self.free_whole:
                return False
            self.free_whole -= 1
        else:
            choice = self.fleet.choose(profile.name)
            if choice is None:
                return False
            if self.mode == "slots" and not choice.reuses:
                self.repartitions += 1
            self.fleet.bind(job.name, choice)
        self.busy_slices += profile.size
        self.waits.append(self.now - job.arrival)
        self.push(self.now + job.duration, _Event.DEPARTURE, job)
        return True

    def finish(self, job: MigJob) -> None:
        self.busy_slices -= self.profiles[job.kind].size
        if self.mode == "whole":
            self.free_whole += 1
        else:
            self.fleet.release(job.name)

    def dispatch(self) -> None:
        self.waiting = [job for job in self.waiting if not self.start(job)]
        if self.mode == "dynamic" and self.waiting:
            self.repartition()

    def repartition(self) -> None:
        """Plan the wholly free GPUs (not already being reconfigured) for the waiting demand that
        reconfigurations under way will not serve."""
        layouts = self.fleet.layouts()
        free = {node: {i: lay for i, lay in gpus.items() if not lay.busy and (node, i) not in self.reconfiguring}
                for node, gpus in layouts.items()}
        if not any(free.values()):
            return
        coming = sum((lay.counts() for lay in self.reconfiguring.values()), Counter())
        demand = Counter(self.profiles[j.kind].name for j in self.waiting) - coming
        if not demand:
            return
        result = plan(free, demand, time_limit=1.0)
        for gpu in result.changed:
            self.reconfiguring[(gpu.node, gpu.index)] = gpu.after
            self.fleet.set_layout(gpu.node, gpu.index, empty(self.model))  # drained while mig-manager works
            self.push(self.now + self.reconfigure_s, _Event.RECONFIGURED, (gpu.node, gpu.index))
            self.repartitions += 1


def simulate(mode: str, jobs: list[MigJob], model: GpuModel, *, nodes: int, gpus_per_node: int,
             mix: Mapping[str, float], horizon: float | None = None, reconfigure_s: float = 120.0) -> Outcome:
    """Run ``jobs`` under ``mode`` until ``horizon`` seconds (default: the last arrival)."""
    if mode not in MODES:
        raise ValueError(f"unknown MIG mode {mode!r}; choose from {', '.join(MODES)}")
    end = horizon if horizon is not None else max((j.arrival for j in jobs), default=0.0)
    return _Run(mode, jobs, model, nodes, gpus_per_node, mix, reconfigure_s, end).run()
