"""Repartition planning: new layouts for free GPUs that serve the pending demand.

A GPU with any instance in use keeps its layout (mig-manager reconfigures whole GPUs and would
disturb the running pod); its idle instances still serve demand. Every wholly free GPU may get
any maximal layout of the demanded profiles, or keep its own. CP-SAT chooses, per group of
interchangeable GPUs (same model, same current layout), how many take each layout:

    maximise   W * sum(size[p] * served[p])  -  (GPUs whose layout changes)
    subject to served[p] <= demand[p],  served[p] <= idle supply[p] + sum(x[g, c] * count[c, p])
               sum over c of x[g, c] = GPUs in group g

so satisfied demand (in memory slices) comes first and touching fewer GPUs second. Grouping
keeps the model small whatever the fleet size: 1,000 empty A100s are one group. When CP-SAT
finds no solution in its time limit, a greedy pass gives each free GPU in turn the layout that
serves the most remaining demand.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mig.catalog import GpuModel
from mig.geometry import Layout, NodeLayouts, indexed, maximal_layouts


@dataclass(frozen=True, slots=True)
class GpuPlan:
    node: str
    index: int
    before: Layout
    after: Layout

    @property
    def changed(self) -> bool:
        return self.before.counts() != self.after.counts()


@dataclass(frozen=True)
class Plan:
    gpus: tuple[GpuPlan, ...]
    demand: Mapping[str, int]
    served: Mapping[str, int]  # demand the planned layouts' idle instances can take
    solver: str  # "cp-sat" or "greedy"
    optimal: bool
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> tuple[GpuPlan, ...]:
        return tuple(g for g in self.gpus if g.changed)

    def served_slices(self, sizes: Mapping[str, int]) -> int:
        return sum(sizes[p] * n for p, n in self.served.items())


@dataclass(frozen=True, slots=True)
class _Group:
    model: GpuModel
    current: Layout
    members: tuple[tuple[str, int], ...]  # (node, GPU index)
    options: tuple[Layout, ...]  # options[0] is the current layout


def _idle_counts(layout: Layout) -> Counter[str]:
    return Counter(i.name for i in layout.instances if not i.in_use)


def _sizes(layouts: Mapping[str, Mapping[int, Layout]], demand: Mapping[str, int]) -> dict[str, int]:
    """Memory slices of each demanded profile; a name must mean one size across the fleet's models."""
    sizes: dict[str, int] = {}
    for model in {lay.model for gpus in layouts.values() for lay in gpus.values()}:
        for p in model.profiles:
            if p.name in demand:
                if sizes.setdefault(p.name, p.size) != p.size:
                    raise ValueError(f"profile {p.name} has different sizes on this fleet's GPU models; plan each model apart")
    return sizes


def plan(layouts: NodeLayouts, demand: Mapping[str, int], *, time_limit: float = 2.0,
         driver: int | None = None, solver: str = "cp-sat") -> Plan:
    """The layouts every GPU should have (``layouts``: per node, the layout of each GPU index, as
    a mapping or a list) to serve ``demand`` (pending instances per profile name). ``solver``
    "greedy" skips CP-SAT."""
    layouts = {node: indexed(gpus) for node, gpus in layouts.items()}
    demand = {p: n for p, n in demand.items() if n > 0}
    sizes = _sizes(layouts, demand)
    notes = tuple(f"no GPU here offers {p}" for p in sorted(demand) if p not in sizes)
    supply: Counter[str] = Counter()
    grouped: dict[tuple[GpuModel, Layout], list[tuple[str, int]]] = defaultdict(list)
    for node in sorted(layouts):
        for i, layout in layouts[node].items():
            if layout.busy:
                supply.update(_idle_counts(layout))
            else:
                grouped[(layout.model, layout)].append((node, i))
    groups = []
    for (model, current), members in grouped.items():
        wanted = frozenset(model.profile(p) for p in demand if model.has(p))
        options = (current, *(o for o in maximal_layouts(model, wanted, driver) if o.counts() != current.counts()))
        groups.append(_Group(model, current, tuple(members), options))
    groups.sort(key=lambda g: g.members[0])

    choice, optimal, used, seconds = None, False, "greedy", 0.0
    if solver == "cp-sat":
        choice, optimal, seconds = _solve(groups, demand, supply, sizes, time_limit)
        used = "cp-sat"
    if choice is None:
        choice = _greedy(groups, demand, supply, sizes)
        used = "greedy"

    planned: dict[tuple[str, int], Layout] = {}
    for group, counts in zip(groups, choice):
        members = iter(group.members)
        for option, n in zip(group.options, counts):
            for _ in range(n):
                planned[next(members)] = option
    gpus = tuple(
        GpuPlan(node, i, layout, planned.get((node, i), layout))
        for node in sorted(layouts) for i, layout in layouts[node].items()
    )
    offered = supply + sum((_idle_counts(g.after) for g in gpus if not g.before.busy), Counter())
    served = {p: min(n, offered[p]) for p, n in demand.items()}
    return Plan(gpus, demand, served, used, optimal, seconds, notes)


def _solve(groups: Sequence[_Group], demand: Mapping[str, int], supply: Counter[str], sizes: Mapping[str, int],
           time_limit: float) -> tuple[list[list[int]] | None, bool, float]:
    from ortools.sat.python import cp_model  # half a second to import: only plans that solve pay it

    model = cp_model.CpModel()
    x = [[model.new_int_var(0, len(g.members), f"x{k}_{c}") for c in range(len(g.options))] for k, g in enumerate(groups)]
    for g, xs in zip(groups, x):
        model.add(sum(xs) == len(g.members))
    served = {}
    for p, n in demand.items():
        if p not in sizes:
            continue
        served[p] = model.new_int_var(0, n, f"served_{p}")
        offer = [xs[c] * g.options[c].counts()[p] for g, xs in zip(groups, x)
                 for c in range(len(g.options)) if g.options[c].counts()[p]]
        model.add(served[p] <= supply[p] + sum(offer))
    touched = [xs[c] for g, xs in zip(groups, x) for c in range(1, len(g.options))]
    weight = sum(len(g.members) for g in groups) + 1
    model.maximize(weight * sum(sizes[p] * v for p, v in served.items()) - sum(touched))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 1  # one worker: the same input gives the same plan
    solver.parameters.random_seed = 0
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, False, solver.wall_time
    return [[solver.value(v) for v in xs] for xs in x], status == cp_model.OPTIMAL, solver.wall_time


def _greedy(groups: Sequence[_Group], demand: Mapping[str, int], supply: Counter[str],
            sizes: Mapping[str, int]) -> list[list[int]]:
    """Each free GPU, in order, takes the option serving the most remaining demand (in slices);
    ties keep the current layout, then take the earlier option."""
    remaining = Counter({p: max(0, n - supply[p]) for p, n in demand.items() if p in sizes})
    choice = [[0] * len(g.options) for g in groups]
    for k, g in enumerate(groups):
        for _ in g.members:
            gains = [sum(sizes[p] * min(n, remaining[p]) for p, n in o.counts().items() if p in sizes)
                     for o in g.options]
            best = max(range(len(g.options)), key=lambda c: (gains[c], -c))
            choice[k][best] += 1
            for p, n in g.options[best].counts().items():
                if p in sizes:
                    remaining[p] = max(0, remaining[p] - n)
    return choice
