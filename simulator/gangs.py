"""The gang scenario: the same workload run gang-unaware (members placed one by one, holding
GPUs while they wait for their siblings) and gang-aware (all-or-nothing), side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scheduler.model.cluster import Node, WorkloadKind
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from simulator.results import TimelineResult
from simulator.timeline import run_timeline, siblings_of
from simulator.traces import Arrival

GANG_MODES = ("unaware", "aware")


def _last_event(result: TimelineResult) -> float:
    return max((t for p in result.pods for t in (p.start, p.end) if t is not None), default=0.0)


def gang_figures(result: TimelineResult, arrivals: Sequence[Arrival], horizon: float) -> dict[str, float]:
    """Gangs completed and stuck, and GPU-hours members held before their whole gang ran (idle:
    a worker without its siblings computes nothing), counted up to ``horizon`` for gangs that
    never completed (a deadlock holds them forever)."""
    gangs = {members for members in siblings_of(arrivals).values()}
    completed = stuck = 0
    idle = 0.0
    for members in gangs:
        records = [result.pods[i] for i in members]
        started = [r.start for r in records if r.start is not None]
        whole = len(started) == len(records)
        completed += whole and all(r.end is not None for r in records)
        stuck += bool(started) and not whole
        ran_from = max(started) if whole else horizon
        for i, r in zip(members, records):
            gpu = arrivals[i].pod.gpu
            if r.start is not None and gpu is not None:
                idle += (ran_from - r.start) * gpu.total_milli / 1000 / 3600
    return {"gangs": len(gangs), "completed gangs": completed, "gangs stuck part-placed": stuck,
            "idle GPU-hours held": round(idle, 1), "pods never started": sum(p.start is None for p in result.pods)}


def compare_gang_modes(nodes: Sequence[Node], arrivals: Sequence[Arrival], policy: str, seed: int,
                       modes: Sequence[str] = GANG_MODES,
                       classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES) -> dict[str, dict[str, float]]:
    """Per mode (``aware`` or ``unaware``), the figures of :func:`gang_figures`, idle time counted
    up to the last event of any mode's run."""
    results = {mode: run_timeline(nodes, arrivals, policy, seed, gangs=mode == "aware", classes=classes) for mode in modes}
    horizon = max(_last_event(r) for r in results.values())
    return {mode: gang_figures(r, arrivals, horizon) | {"hours simulated": round(horizon / 3600, 1)}
            for mode, r in results.items()}
