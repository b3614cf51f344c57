"""All-or-nothing gang placement: a plan for at least ``min_members`` pods at once, or none.

Planning is speculative: members are assigned on ``snapshot.copy()`` and the plan is returned
only if enough of them fit; the caller commits it with :func:`commit`. GPU gangs are packed on
the fewest nodes, then in the tightest topology domain that still allows that few (a rack,
then a zone, then anywhere), because a gang's collective traffic crosses every hop between
its members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.gang.groups import Gang
from scheduler.gang.topology import Domain, Level, Topology
from scheduler.model.cluster import Pod
from scheduler.model.resources import MILLI_PER_GPU
from scheduler.model.snapshot import Assignment, OvercommitError, Snapshot
from scheduler.placement.engine import Placer

#: Domains of one level tried per plan before moving to the next level (keeps planning bounded).
DOMAINS_PER_LEVEL = 3


@dataclass(frozen=True, slots=True)
class GangPlan:
    gang: str
    assignments: tuple[Assignment, ...]
    level: Level  # how far apart the members are
    domain: str

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(a.node for a in self.assignments))


@dataclass(frozen=True, slots=True)
class GangUnplaceable:
    gang: str
    reason: str


GangDecision = GangPlan | GangUnplaceable


def _fit_key(pod: Pod) -> tuple[object, ...]:
    return (pod.requests, pod.gpu, frozenset(pod.node_selector.items()), pod.affinity, pod.tolerations, pod.pipeline)


def _size(pod: Pod) -> tuple[int, int]:
    return (pod.gpu.total_milli if pod.gpu else 0, pod.requests.get("cpu", 0))


def copies_per_node(placer: Placer, snap: Snapshot, pod: Pod) -> np.ndarray:
    """How many copies of ``pod`` each node could take now (0 where a filter rejects it)."""
    copies = np.zeros(len(snap), dtype=np.int64)
    feasible = placer.filter(snap, pod).feasible
    if len(feasible) == 0:
        return copies
    demand = snap.demand(pod)
    room = np.full(len(feasible), np.iinfo(np.int64).max // 2, dtype=np.int64)
    wanted = demand.amounts > 0
    if wanted.any():
        free = snap.free[demand.columns[wanted]][:, feasible]
        room = np.minimum(room, (free // demand.amounts[wanted][:, None]).min(axis=0))
    if pod.gpu is not None:
        if pod.gpu.shared:
            per_gpu = np.clip(snap.gpu_free[feasible], 0, None) // pod.gpu.milli
            room = np.minimum(room, per_gpu.sum(axis=1))
        else:
            room = np.minimum(room, snap.gpu_whole_free[feasible] // pod.gpu.count)
    copies[feasible] = room
    return copies


def _fewest_nodes(copies: np.ndarray, count: int) -> int | None:
    """The fewest of these nodes that hold ``count`` copies, or None if they cannot."""
    ordered = np.sort(copies)[::-1]
    reached = np.flatnonzero(np.cumsum(ordered) >= count)
    return int(reached[0]) + 1 if len(reached) else None


def _candidates(topology: Topology, copies: np.ndarray, count: int) -> list[Domain]:
    """Domains that can hold the gang on the fewest nodes possible, tightest level first; within
    a level, the one left fullest afterwards first (packing)."""
    fewest = _fewest_nodes(copies, count)
    if fewest is None:
        return []
    by_level: dict[Level, list[tuple[int, str, Domain]]] = {}
    for domain in topology.domains:
        local = copies[domain.nodes]
        if local.sum() < count:
            continue
        top = np.sort(local)[::-1][:fewest]
        if top.sum() >= count:
            by_level.setdefault(domain.level, []).append((int(local.sum()), domain.name, domain))
    return [d for level in sorted(by_level) for _, _, d in sorted(by_level[level])[:DOMAINS_PER_LEVEL]]


def _assign_within(placer: Placer, trial: Snapshot, members: Sequence[Pod], order: np.ndarray,
                   feasible: dict[tuple[object, ...], np.ndarray]) -> list[Assignment] | None:
    """Members onto ``order``'s nodes, nodes the gang already uses first; None if one does not fit."""
    placed: list[Assignment] = []
    used: list[int] = []
    full: set[tuple[tuple[object, ...], int]] = set()  # room only shrinks during a trial: never retry
    nodes = order.tolist()
    for pod in members:
        key = _fit_key(pod)
        ok = feasible[key]
        for node in (*used, *nodes):
            if not ok[node] or (key, node) in full:
                continue
            try:
                assignment = trial.assign(pod, node, placer.gpus(trial, pod, node))
            except OvercommitError:
                full.add((key, node))
                continue
            placed.append(assignment)
            if node not in used:
                used.append(node)
            break
        else:
            return None
    return placed


def plan_gang(placer: Placer, snap: Snapshot, gang: Gang, topology: Topology) -> GangDecision:
    """A plan placing every member if they all fit, else ``min_members`` of them, else none."""
    members = sorted(gang.members, key=_size, reverse=True)  # biggest first: they are hardest to fit
    if not gang.complete:
        return GangUnplaceable(gang.key, f"gang {gang.key}: {len(members)} of {gang.min_members} members exist")
    copies = {key: copies_per_node(placer, snap, pod) for key, pod in {_fit_key(p): p for p in members}.items()}
    feasible = {key: c > 0 for key, c in copies.items()}
    # Domains are sized by the biggest member; smaller ones go where it went, or anywhere in the domain.
    lead = copies[_fit_key(members[0])]
    for count in dict.fromkeys((len(members), gang.min_members)):
        chosen = members[:count]
        for domain in _candidates(topology, lead, count):
            order = domain.nodes[np.argsort(-lead[domain.nodes], kind="stable")]
            placed = _assign_within(placer, snap.copy(), chosen, order, feasible)
            if placed is not None:
                return GangPlan(gang.key, tuple(placed), topology.level([a.node for a in placed]), domain.name)
    return GangUnplaceable(gang.key, _why(gang, members, lead, snap))


def _why(gang: Gang, members: Sequence[Pod], lead: np.ndarray, snap: Snapshot) -> str:
    gpus = sum(p.gpu.total_milli for p in members[: gang.min_members] if p.gpu) / MILLI_PER_GPU
    need = f"{gang.min_members} members at once" + (f" ({gpus:g} GPUs)" if gpus else "")
    free = int(snap.gpu_idle.sum()) / MILLI_PER_GPU
    return (f"gang {gang.key} needs {need}; room for {int(lead.sum())} like {members[0].name} now, "
            f"{free:g} GPUs free in the cluster")


def commit(snap: Snapshot, plan: GangPlan) -> None:
    """Apply a plan to ``snap`` as one step: if any member no longer fits, none stays assigned."""
    done: list[str] = []
    try:
        for a in plan.assignments:
            snap.assign(a.pod, a.node, a.gpus)
            done.append(a.pod.key)
    except OvercommitError:
        for key in done:
            snap.release(key)
        raise
