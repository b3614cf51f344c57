"""What a simulation run produced, and the figures an admin compares runs by."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Arrived-workload points (percent of GPU capacity) reported for fill runs, as in the FGD paper.
CURVE_POINTS = (50, 80, 100, 130)
PERCENTILES = (50, 90, 99)
#: The figures :meth:`TimelineResult.projects` gives each project, in order.
PROJECT_FIGURES = ("pods", "started", "wait p50 s", "wait p99 s", "mean GPUs", "borrowed GPUs", "preemptions",
                   "burst pods", "burst cost")


def is_ratio(key: str) -> bool:
    return "alloc" in key or key == "fragmentation"


def format_figure(key: str, value: float | None, spread: float | None = None) -> str:
    """A summary figure as reports show it: ratios as percentages, durations (keys ending in
    " s") in minutes, or hours from two hours up, other figures as counts; ``spread`` (in the
    figure's unit) is shown after the value in the value's unit."""
    if value is None or not math.isfinite(value):
        return ""
    if is_ratio(key):
        scale, unit, digits = 0.01, "%", 1
    elif key.endswith(" s"):
        scale, unit, digits = (3600, " h", 1) if abs(value) >= 7200 else (60, " min", 1)
    else:
        scale, unit, digits = 1, "", 0 if value == int(value) and (spread or 0) == int(spread or 0) else 1
    text = f"{value / scale:,.{digits}f}"
    if spread is not None:
        text += f" ± {spread / scale:,.{digits}f}"
    return text + unit


def figure_name(key: str) -> str:
    """A figure's name without the unit suffix of its key (``wait p99 s`` is ``wait p99``)."""
    return key.removesuffix(" s")


def _round(value: float) -> float:
    """Figures are written with a fixed precision, so equal runs give equal bytes."""
    return round(float(value), 6)


@dataclass(frozen=True)
class FillResult:
    policy: str
    seed: int
    inflation: float
    capacity_milli: int
    #: GPU requested by all pods arrived so far, and GPU allocated, after each arrival (milli).
    arrived_milli: np.ndarray
    allocated_milli: np.ndarray
    failed: dict[str, int]
    fragmented_milli: float
    mode: str = field(default="fill", init=False)

    @property
    def pods(self) -> int:
        return len(self.arrived_milli)

    def curve(self) -> dict[int, float]:
        """GPU allocation ratio by arrived workload: for each whole percent x of capacity, the
        mean allocation ratio over the arrivals whose arrived workload rounds to x."""
        arrived = np.rint(100 * self.arrived_milli / self.capacity_milli).astype(np.int64)
        ratio = self.allocated_milli / self.capacity_milli
        points, starts = np.unique(arrived, return_index=True)
        means = np.add.reduceat(ratio, starts) / np.diff(np.r_[starts, len(ratio)])
        return {int(x): float(m) for x, m in zip(points, means)}

    def summary(self) -> dict[str, float]:
        curve = self.curve()
        out = {f"alloc@{x}%": _round(curve[x]) for x in CURVE_POINTS if x in curve}
        out["final alloc"] = _round(self.allocated_milli[-1] / self.capacity_milli) if self.pods else 0.0
        out["failed pods"] = float(sum(self.failed.values()))
        out["fragmentation"] = _round(self.fragmented_milli / self.capacity_milli)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "policy": self.policy,
            "seed": self.seed,
            "inflation": self.inflation,
            "pods": self.pods,
            "gpu_capacity_milli": self.capacity_milli,
            "summary": self.summary(),
            "failed_by_reason": self.failed,
            "curve": {str(x): _round(v) for x, v in self.curve().items()},
        }


@dataclass(frozen=True)
class PodRecord:
    name: str
    kind: str
    project: str
    arrival: float
    start: float | None
    end: float | None
    reason: str = ""  # why it was still waiting when the run ended
    #: Runs a reclaim cut short, as (start, evicted) times; the pod then waited and started again.
    evictions: tuple[tuple[float, float], ...] = ()
    gpu_seconds: float = 0.0  # GPU held, summed over its runs (GPU x seconds)
    burst: str = ""  # the target it overflowed to, if it did
    cost: float = 0.0  # what its overflow cost

    @property
    def preemptions(self) -> int:
        return len(self.evictions)

    @property
    def wait(self) -> float | None:
        return None if self.start is None else self.start - self.arrival

    @property
    def completion(self) -> float | None:
        return None if self.end is None else self.end - self.arrival


@dataclass(frozen=True)
class Sample:
    """Cluster state after the events at one instant."""

    time: float
    gpu_allocated: float  # ratio of GPU capacity
    cpu_allocated: float  # ratio of cpu capacity
    pending: int
    fragmentation: float  # stranded GPU, ratio of capacity


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"p{p}": _round(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}


@dataclass(frozen=True)
class TimelineResult:
    policy: str
    seed: int
    pods: tuple[PodRecord, ...]
    samples: tuple[Sample, ...]
    #: The quota configuration the run admitted pods with (its file name, or "no quota" for the
    #: baseline beside compared files), if any.
    quota: str | None = None
    #: The burst configuration (its file name, or "no overflow" for the baseline), if any.
    burst: str | None = None
    #: Per project, GPU x seconds its pool held above its guarantee (runs with quota).
    borrowed_gpu_seconds: Mapping[str, float] = field(default_factory=dict)
    mode: str = field(default="timeline", init=False)

    @property
    def failed(self) -> dict[str, int]:
        """Pods never started, by the reason they were waiting."""
        counts: dict[str, int] = {}
        for p in self.pods:
            if p.start is None:
                counts[p.reason] = counts.get(p.reason, 0) + 1
        return dict(sorted(counts.items()))

    def mean_gpu_allocation(self) -> float:
        """Time-weighted mean of the GPU allocation ratio while work arrives (first to last
        arrival), so that the drain after the last arrival does not dilute it."""
        if not self.samples:
            return 0.0
        last = max(p.arrival for p in self.pods)
        times = np.array([s.time for s in self.samples if s.time <= last])
        values = np.array([s.gpu_allocated for s in self.samples if s.time <= last])
        span = last - times[0]
        if span <= 0:
            return float(values[-1])
        return float((values * np.diff(np.r_[times, last])).sum() / span)

    def waits(self, kind: str | None = None) -> list[float]:
        return [p.wait for p in self.pods if p.wait is not None and kind in (None, p.kind)]

    def completions(self, kind: str | None = None) -> list[float]:
        return [p.completion for p in self.pods if p.completion is not None and kind in (None, p.kind)]

    def summary(self) -> dict[str, float]:
        out = {
            "started": float(sum(p.start is not None for p in self.pods)),
            "never started": float(sum(p.start is None for p in self.pods)),
            "mean GPU alloc": _round(self.mean_gpu_allocation()),
        }
        out |= {f"wait {k} s": v for k, v in _percentiles(self.waits()).items()}
        out |= {f"completion {k} s": v for k, v in _percentiles(self.completions()).items()}
        if self.quota is not None:
            out["preemptions"] = float(sum(p.preemptions for p in self.pods))
            out["borrowed GPUs"] = _round(sum(self.borrowed_gpu_seconds.values()) / self.span())
        if self.burst is not None:
            out["burst pods"] = float(sum(1 for p in self.pods if p.burst))
            out["burst cost"] = _round(sum(p.cost for p in self.pods))
        return out

    def span(self) -> float:
        """Seconds from the first arrival to the last event."""
        if not self.samples:
            return 1.0
        return max(self.samples[-1].time - min(p.arrival for p in self.pods), 1.0)

    def projects(self) -> dict[str, dict[str, float | None]]:
        """Per project: pods, started, wait percentiles, mean GPUs held and borrowed over the run,
        and preemptions by reclaim."""
        out: dict[str, dict[str, float]] = {}
        for project in sorted({p.project for p in self.pods}):
            pods = [p for p in self.pods if p.project == project]
            waits = [p.wait for p in pods if p.wait is not None]
            out[project] = {
                "pods": float(len(pods)),
                "started": float(len(waits)),
                **{f"wait p{q} s": _round(np.percentile(waits, q)) if waits else None for q in (50, 99)},
                "mean GPUs": _round(sum(p.gpu_seconds for p in pods) / self.span()),
                "borrowed GPUs": _round(self.borrowed_gpu_seconds.get(project, 0.0) / self.span()),
                "preemptions": float(sum(p.preemptions for p in pods)),
                "burst pods": float(sum(1 for p in pods if p.burst)),
                "burst cost": _round(sum(p.cost for p in pods)),
            }
        return out

    def project_figures(self) -> tuple[str, ...]:
        """The project figures this run gives meaning to: borrowing and preemptions need quota,
        overflow needs burst."""
        unused = (() if self.quota is not None else ("borrowed GPUs", "preemptions")) + \
                 (() if self.burst is not None else ("burst pods", "burst cost"))
        return tuple(k for k in PROJECT_FIGURES if k not in unused)

    def to_dict(self) -> dict[str, Any]:
        kinds = sorted({p.kind for p in self.pods})
        return {
            "mode": self.mode,
            "policy": self.policy,
            "seed": self.seed,
            "pods": len(self.pods),
            "summary": self.summary(),
            "failed_by_reason": self.failed,
            "wait_s_by_kind": {k: _percentiles(self.waits(k)) for k in kinds},
            "completion_s_by_kind": {k: _percentiles(self.completions(k)) for k in kinds},
            "projects": self.projects(),
        }


Result = FillResult | TimelineResult
