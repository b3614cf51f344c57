"""Slot choice: where a pod asking a MIG profile gets its instance, across every GPU of a fleet.

Each GPU's layout is interned as a state; what a request would cost on a state is computed once
per (state, profile, demand mix) and kept, so a choice over thousands of GPUs is one gather and
one ``argmin`` over arrays.

The cost of a candidate slot, compared lexicographically:

1. **waste**: how much of the recent demand the GPU could still take before the placement and
   no longer can after it, beyond what the instance itself takes. Demand is valued in memory
   slices weighted by how often each profile was asked (in tenths, relative to the commonest), so
   a slot the common profiles need is kept before one only rare profiles could use (a 2g at slot
   4 of an empty A100 strands slots 6-7 for a mix of 2g/3g/4g; at slot 0 it strands nothing);
2. **free slices left on the GPU**: fuller GPUs first, which keeps whole GPUs free for large
   profiles and for the repartition planner;
3. whether an idle instance of the profile is already there (reused rather than created);
4. node order, GPU index, slot: ties are broken the same way every time.

Two modes: with ``fixed`` layouts (mig-manager's world) a pod can only take an idle instance
of its profile; otherwise (an agent that creates instances through NVML) any valid placement
over slices no in-use instance holds, idle instances in the way being replaced.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mig.catalog import GpuModel, Profile
from mig.geometry import Instance, Layout, NodeLayouts, completions, fillable, indexed

#: Key of a GPU where the profile does not fit.
NO_FIT = np.iinfo(np.int64).max
_WASTE, _FREE = 1000, 10  # weights that make the integer key lexicographic


def split_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A cost key's waste (in tenths of a weighted slice) and the slices it leaves free on the GPU."""
    return keys // _WASTE, (keys % _WASTE) // _FREE


class DemandMix:
    """The profiles asked recently (the last ``window`` requests), each weighted 1..10 by how often
    it was asked against the commonest; profiles asked less than a twentieth as often drop out.
    Slot choice keeps room for these. Weights move in tenths, so the costs cached for one mix
    serve until the mix really shifts."""

    def __init__(self, window: int = 500, initial: Iterable[str] = ()):
        self._recent: deque[str] = deque(maxlen=window)
        self._counts: Counter[str] = Counter()
        for name in initial:
            self.observe(name)

    def observe(self, profile: str) -> None:
        if len(self._recent) == self._recent.maxlen:
            old = self._recent[0]
            self._counts[old] -= 1
            if not self._counts[old]:
                del self._counts[old]
        self._recent.append(profile)
        self._counts[profile] += 1

    def weights(self) -> frozenset[tuple[str, int]]:
        top = max(self._counts.values(), default=0)
        return frozenset((n, max(1, round(10 * c / top))) for n, c in self._counts.items() if 20 * c >= top)


@dataclass(frozen=True, slots=True)
class SlotChoice:
    node: str
    gpu: int  # index on the node
    start: int
    profile: Profile
    waste: float  # weighted slices the mix can no longer fill, beyond the instance's own
    reuses: bool  # an idle instance of the profile is already there

    def __str__(self) -> str:
        return f"{self.profile.name} -> {self.node} GPU {self.gpu} slot {self.start} (waste {self.waste})"


@dataclass(frozen=True, slots=True)
class _Cost:
    key: int  # lexicographic cost as one integer; NO_FIT when the profile does not fit
    start: int
    waste: float
    reuses: bool


def _cost(layout: Layout, name: str, mix: frozenset[tuple[str, int]], fixed: bool, driver: int | None) -> _Cost:
    """The best slot for profile ``name`` on one GPU state, and its cost."""
    model = layout.model
    if not model.has(name):
        return _Cost(NO_FIT, -1, 0, False)
    profile = model.profile(name)
    idle = {i.start for i in layout.instances if not i.in_use and i.profile == profile}
    held = layout.in_use_only()
    starts = sorted(idle) if fixed else held.free_starts(profile, driver)
    weight = dict(mix)
    wanted = frozenset((p, weight.get(p.name, 1)) for p in model.profiles if p.name in weight or p == profile)
    own = weight.get(name, 1) * profile.size
    before = fillable(held, wanted, driver)
    best = _Cost(NO_FIT, -1, 0, False)
    for s in starts:
        after_layout = held.adding(Instance(profile, s, True))
        waste = 0 if fixed else before - own - fillable(after_layout, wanted, driver)  # in tenths of a slice
        # Taking an idle instance leaves a fixed layout's unoccupied slices as they are; less the
        # instance's size went negative on a full GPU, a key split_key cannot read.
        free = layout.free_slices if fixed else after_layout.free_slices
        reuses = s in idle
        key = waste * _WASTE + free * _FREE + (0 if reuses else 1)
        if key < best.key:
            best = _Cost(key, s, waste / 10, reuses)
    return best


class Fleet:
    """Per-GPU MIG layouts of a set of nodes, and the slot choice over them."""

    def __init__(self, nodes: NodeLayouts, *, fixed: bool = False, driver: int | None = None,
                 mix: DemandMix | None = None):
        self.fixed = fixed
        self.driver = driver
        self.mix = mix if mix is not None else DemandMix()
        gpus = {n: indexed(g) for n, g in nodes.items()}
        self.node_names: tuple[str, ...] = tuple(gpus)
        self.node_index = {n: i for i, n in enumerate(self.node_names)}
        flat = [(i, g, layout) for i, n in enumerate(self.node_names) for g, layout in gpus[n].items()]
        self.gpu_node = np.array([i for i, _, _ in flat], dtype=np.int64)
        self.gpu_local = np.array([g for _, g, _ in flat], dtype=np.int64)
        self._gpu_of = {(self.node_names[i], g): k for k, (i, g, _) in enumerate(flat)}
        self._states: list[Layout] = []
        self._state_ids: dict[Layout, int] = {}
        self.state = np.array([self._intern(layout) for _, _, layout in flat], dtype=np.int64)
        self._tables: dict[tuple[str, frozenset[tuple[str, int]]], tuple[dict[int, _Cost], np.ndarray]] = {}
        self._bound: dict[str, tuple[int, Instance]] = {}

    # State ------------------------------------------------------------------------------
    def _intern(self, layout: Layout) -> int:
        sid = self._state_ids.get(layout)
        if sid is None:
            sid = self._state_ids[layout] = len(self._states)
            self._states.append(layout)
        return sid

    def gpu(self, node: str, index: int) -> int:
        """The fleet-wide position of GPU ``index`` of ``node``."""
        return self._gpu_of[(node, index)]

    def layout(self, node: str, index: int) -> Layout:
        return self._states[self.state[self.gpu(node, index)]]

    def layouts(self) -> dict[str, dict[int, Layout]]:
        out: dict[str, dict[int, Layout]] = {n: {} for n in self.node_names}
        for (node, index), k in self._gpu_of.items():
            out[node][index] = self._states[self.state[k]]
        return out

    def set_layout(self, node: str, index: int, layout: Layout) -> None:
        self.state[self.gpu(node, index)] = self._intern(layout)

    def models(self) -> set[GpuModel]:
        return {self._states[s].model for s in set(self.state.tolist())}

    def copy(self) -> Fleet:
        """An independent copy to bind slots in on trial. Layouts are immutable and shared; costs
        are recomputed in the copy (per distinct layout, so cheap), which leaves this fleet free to
        be read from other threads meanwhile."""
        clone = object.__new__(Fleet)
        clone.__dict__.update(self.__dict__)
        clone.state = self.state.copy()
        clone._states = list(self._states)
        clone._state_ids = dict(self._state_ids)
        clone._tables = {}
        clone._bound = dict(self._bound)
        return clone

    def placeable(self) -> dict[str, int]:
        """Per profile name of the fleet's models, how many instances of it could be placed on free
        valid slots now, summed over GPUs. Each GPU is counted for each profile alone: instances of
        different profiles compete for the same slots. With fixed layouts, the idle instances of it."""
        gpus = np.bincount(self.state, minlength=len(self._states))
        out: Counter[str] = Counter()
        for sid in np.flatnonzero(gpus).tolist():
            layout = self._states[sid]
            for p in layout.model.profiles:
                out[p.name] += int(gpus[sid]) * self._room(layout, p)
        return dict(out)

    def _room(self, layout: Layout, profile: Profile) -> int:
        """How many instances of ``profile`` one GPU in ``layout`` could still take."""
        if self.fixed:
            return sum(1 for i in layout.instances if not i.in_use and i.profile == profile)
        added = completions(layout.in_use_only(), frozenset((profile,)), self.driver)
        return max((n for counts in added for _, n in counts), default=0)

    # Choice -----------------------------------------------------------------------------
    def gpu_keys(self, profile: str) -> np.ndarray:
        """Per GPU, the cost of its best slot for ``profile`` (``NO_FIT`` where none). Costs are
        computed for the states GPUs are in now, once per state and demand mix."""
        costs, keys = self._table(profile)
        present = np.unique(self.state)
        missing = present[keys[present] < 0]
        if len(missing):
            mix = self.mix.weights()
            for sid in missing.tolist():
                costs[sid] = _cost(self._states[sid], profile, mix, self.fixed, self.driver)
                keys[sid] = costs[sid].key
        return keys[self.state]

    def _table(self, profile: str) -> tuple[dict[int, _Cost], np.ndarray]:
        """Costs of ``profile`` per state under the current mix; -1 where not computed yet."""
        table = self._tables.setdefault((profile, self.mix.weights()), ({}, np.empty(0, dtype=np.int64)))
        if len(table[1]) < len(self._states):
            grown = np.full(max(len(self._states), 2 * len(table[1])), -1, dtype=np.int64)
            grown[: len(table[1])] = table[1]
            table = self._tables[(profile, self.mix.weights())] = (table[0], grown)
        return table

    def node_keys(self, profile: str) -> np.ndarray:
        """Per node, the cost of its best GPU (``NO_FIT`` where none fits)."""
        out = np.full(len(self.node_names), NO_FIT, dtype=np.int64)
        np.minimum.at(out, self.gpu_node, self.gpu_keys(profile))
        return out

    def choose(self, profile: str, nodes: Iterable[str] | None = None) -> SlotChoice | None:
        """The best free valid slot for profile ``profile`` (a name such as ``3g.40gb``) on
        ``nodes`` (default: all), or None. The same name may differ between GPU models
        (``1g.10gb`` is a double-memory 1g on A100-40GB); each GPU reads it as its model does."""
        keys = self.gpu_keys(profile)
        if nodes is not None:
            allowed = np.zeros(len(self.node_names), dtype=bool)
            allowed[[self.node_index[n] for n in nodes if n in self.node_index]] = True
            keys = np.where(allowed[self.gpu_node], keys, NO_FIT)
        if len(keys) == 0:
            return None
        g = int(np.argmin(keys))
        if keys[g] == NO_FIT:
            return None
        cost = self._table(profile)[0][int(self.state[g])]
        model = self._states[self.state[g]].model
        return SlotChoice(self.node_names[self.gpu_node[g]], int(self.gpu_local[g]), cost.start,
                          model.profile(profile), cost.waste, cost.reuses)

    # Binding ----------------------------------------------------------------------------
    def bind(self, key: str, choice: SlotChoice) -> Layout:
        """Give the slot to ``key`` (a pod): the instance is in use from now on. Idle instances
        overlapping it are replaced, unless layouts are fixed."""
        if key in self._bound:
            raise ValueError(f"{key} already holds a MIG instance")
        g = self.gpu(choice.node, choice.gpu)
        layout = self._states[self.state[g]]
        inst = Instance(choice.profile, choice.start, True)
        idle = Instance(choice.profile, choice.start, False)
        if idle in layout.instances:
            grown = Layout.of(layout.model, (*(i for i in layout.instances if i != idle), inst))
        elif self.fixed:
            raise ValueError(f"no idle {choice.profile.name} at slot {choice.start} on {choice.node} GPU {choice.gpu}")
        else:
            grown = layout.in_use_only().adding(inst)
            for other in layout.instances:  # idle ones stay where they still fit (slots, counts, +me)
                if not other.in_use and (kept := grown.adding(other)).valid(self.driver):
                    grown = kept
        problems = grown.problems(self.driver)
        if problems:
            raise ValueError(f"{choice}: {'; '.join(problems)}")
        self.state[g] = self._intern(grown)
        self._bound[key] = (g, inst)
        return grown

    def release(self, key: str) -> None:
        """The pod is gone; its instance stays, idle (the device plugin keeps advertising it)."""
        g, inst = self._bound.pop(key)
        self._idle(g, inst)

    def vacate(self, node: str, profile: str) -> bool:
        """Make one in-use instance of ``profile`` on ``node`` that no bound pod holds idle: what
        evicting a pod the fleet only knows from reports frees. False where there is none."""
        held = set(self._bound.values())
        for g in np.flatnonzero(self.gpu_node == self.node_index.get(node, -1)).tolist():
            for inst in self._states[self.state[g]].instances:
                if inst.in_use and inst.name == profile and (g, inst) not in held:
                    self._idle(g, inst)
                    return True
        return False

    def _idle(self, g: int, inst: Instance) -> None:
        layout = self._states[self.state[g]]
        rest = [i for i in layout.instances if i != inst]
        self.state[g] = self._intern(Layout.of(layout.model, (*rest, Instance(inst.profile, inst.start, False))))

    def holder(self, key: str) -> tuple[str, int, Instance] | None:
        if key not in self._bound:
            return None
        g, inst = self._bound[key]
        return self.node_names[self.gpu_node[g]], int(self.gpu_local[g]), inst
