"""The exact optimum of serving MIG demand, by a placement-level CP-SAT model.

Independent of the planner's grouping and of :mod:`mig.geometry`'s checks: one boolean per
(GPU, profile, start slot), with the catalog's rules written again as constraints. It measures
how close the planner and slot choice come (tests, ``benchmarks/mig_planning.py``); it is too slow to
plan with at fleet scale.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from ortools.sat.python import cp_model

from mig.geometry import NodeLayouts, indexed


def optimum_slices(layouts: NodeLayouts, demand: Mapping[str, int], time_limit: float = 60.0) -> tuple[int, bool]:
    """The most memory slices of ``demand`` that any layouts of the wholly free GPUs, with the
    idle instances of busy GPUs, can serve; and whether CP-SAT proved it optimal."""
    model = cp_model.CpModel()
    offered: dict[str, list] = {p: [] for p in demand}
    supply: Counter[str] = Counter()
    sizes: dict[str, int] = {}
    for node in sorted(layouts):
        for index, layout in indexed(layouts[node]).items():
            if layout.busy:
                supply.update(i.name for i in layout.instances if not i.in_use)
                continue
            gpu = layout.model
            placed = {(p.name, s): model.new_bool_var(f"{node}/{index}/{p.name}@{s}")
                      for p in gpu.profiles if p.name in demand for s in p.starts}
            profile = {p.name: p for p in gpu.profiles}
            for slot in range(gpu.memory_slices):
                model.add(sum(v for (n, s), v in placed.items() if s <= slot < s + profile[n].size) <= 1)
            for name, p in profile.items():
                sizes.setdefault(name, p.size)
                mine = [v for (n, _), v in placed.items() if n == name]
                if mine:
                    model.add(sum(mine) <= p.max_count)
                    offered[name].extend(mine)
            model.add(sum(v for (n, _), v in placed.items() if profile[n].media) <= 1)
            model.add(sum(v * profile[n].compute for (n, _), v in placed.items()) <= gpu.compute_slices)
    served = []
    for name, n in demand.items():
        if name in sizes:
            v = model.new_int_var(0, n, f"served_{name}")
            model.add(v <= supply[name] + sum(offered[name]))
            served.append(sizes[name] * v)
    model.maximize(sum(served))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 2
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError("CP-SAT found no solution in the time limit")
    return int(round(solver.objective_value)), status == cp_model.OPTIMAL
