"""The occupancy of one GPU as memory slots: layouts, their validity, and the free placements.

A layout is the set of GPU instances on one GPU, each a profile at a start slot, in use (a pod
holds it) or idle. Layouts are immutable and hashable, so that the slot chooser and the planner
can cache what they compute per layout: a fleet of thousands of GPUs has a few dozen distinct ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from mig.catalog import DRIVER_4G_WITH_3G, GpuModel, Profile


@dataclass(frozen=True, slots=True)
class Instance:
    profile: Profile
    start: int
    in_use: bool = False

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def mask(self) -> int:
        return self.profile.mask(self.start)


@dataclass(frozen=True)
class Layout:
    model: GpuModel
    instances: tuple[Instance, ...] = ()

    @staticmethod
    def of(model: GpuModel, instances: Iterable[Instance]) -> Layout:
        return Layout(model, tuple(sorted(instances, key=lambda i: (i.start, i.name, i.in_use))))

    @staticmethod
    def parse(model: GpuModel, placements: Iterable[tuple[str, int]], in_use: bool = False) -> Layout:
        """From ``(profile name, start)`` pairs."""
        return Layout.of(model, (Instance(model.profile(name), start, in_use) for name, start in placements))

    @cached_property
    def occupied(self) -> int:
        mask = 0
        for inst in self.instances:
            mask |= inst.mask
        return mask

    @property
    def free_slices(self) -> int:
        return self.model.memory_slices - self.occupied.bit_count()

    @property
    def busy(self) -> bool:
        """Whether any instance is in use: such a GPU is never repartitioned."""
        return any(i.in_use for i in self.instances)

    def in_use_only(self) -> Layout:
        return Layout(self.model, tuple(i for i in self.instances if i.in_use))

    def counts(self) -> Counter[str]:
        return Counter(i.name for i in self.instances)

    def adding(self, inst: Instance) -> Layout:
        return Layout.of(self.model, (*self.instances, inst))

    def problems(self, driver: int | None = None) -> list[str]:
        """Why this layout cannot exist on the GPU; empty when it can.

        ``driver`` is the driver branch (e.g. 470); None means a recent one (R510 or later).
        """
        return list(_problems(self, driver))

    def valid(self, driver: int | None = None) -> bool:
        return not _problems(self, driver)

    def free_starts(self, profile: Profile, driver: int | None = None) -> tuple[int, ...]:
        """The valid start slots where ``profile`` could be created next to these instances."""
        return _free_starts(self, profile, driver)

    def __str__(self) -> str:
        return " ".join(f"{i.name}@{i.start}{'*' if i.in_use else ''}" for i in self.instances) or "(empty)"


@lru_cache(maxsize=65536)
def _problems(layout: Layout, driver: int | None) -> tuple[str, ...]:
    model = layout.model
    out: list[str] = []
    seen = 0
    for inst in layout.instances:
        p = inst.profile
        if not model.has(p.name) or model.profile(p.name) != p:
            out.append(f"{model.name} has no MIG profile {p.name}")
            continue
        if inst.start not in p.starts:
            out.append(f"{p.name} cannot start at slot {inst.start} (valid: {', '.join(map(str, p.starts))})")
        elif inst.mask & seen:
            out.append(f"{p.name} at slot {inst.start} overlaps another instance")
        seen |= inst.mask
    counts = layout.counts()
    for name, n in sorted(counts.items()):
        if model.has(name) and n > model.profile(name).max_count:
            out.append(f"{n} x {name}, at most {model.profile(name).max_count} per GPU")
    if sum(1 for i in layout.instances if i.profile.media) > 1:
        out.append("more than one +me instance; media extensions go to one instance per GPU")
    compute = sum(i.profile.compute for i in layout.instances)
    if compute > model.compute_slices:
        out.append(f"{compute} compute slices used, the GPU has {model.compute_slices}")
    kinds = {i.profile.compute for i in layout.instances}
    if driver is not None and driver < DRIVER_4G_WITH_3G and {3, 4} <= kinds:
        out.append(f"4g together with 3g needs driver R{DRIVER_4G_WITH_3G} or later, this node has R{driver}")
    return tuple(out)


@lru_cache(maxsize=65536)
def _free_starts(layout: Layout, profile: Profile, driver: int | None) -> tuple[int, ...]:
    return tuple(
        s for s in profile.starts
        if not profile.mask(s) & layout.occupied and layout.adding(Instance(profile, s)).valid(driver)
    )


#: Per node, the layout of each GPU index, as a mapping or a list (index = position).
NodeLayouts = Mapping[str, Mapping[int, Layout] | Sequence[Layout]]


def indexed(gpus: Mapping[int, Layout] | Sequence[Layout]) -> dict[int, Layout]:
    return dict(sorted(gpus.items())) if isinstance(gpus, Mapping) else dict(enumerate(gpus))


def empty(model: GpuModel) -> Layout:
    return Layout(model)


def fillable(layout: Layout, weighted: frozenset[tuple[Profile, int]], driver: int | None = None) -> int:
    """The most value that instances of the ``(profile, weight)`` pairs could still add to this
    GPU, an instance being worth its memory slices times its profile's weight. Weights are
    positive, so the best is one of the maximal completions, which are cached per profile set."""
    weight = dict(weighted)
    return max((sum(weight[p] * p.size * n for p, n in added) for added in completions(layout, frozenset(weight), driver)),
               default=0)


@lru_cache(maxsize=65536)
def completions(layout: Layout, profiles: frozenset[Profile], driver: int | None = None) -> tuple[tuple[tuple[Profile, int], ...], ...]:
    """Every maximal way to add instances of ``profiles`` to ``layout`` (none more fits beside
    them), as ``(profile, count)`` pairs, one per distinct set of counts."""
    return tuple(
        tuple((p, n) for p in sorted(profiles, key=lambda q: q.name) if (n := grown.counts()[p.name] - layout.counts()[p.name]))
        for grown in _maximal(layout, profiles, driver)
    )


def maximal_layouts(model: GpuModel, profiles: frozenset[Profile], driver: int | None = None) -> tuple[Layout, ...]:
    """Every layout of ``profiles`` that no further instance of them fits beside, one per distinct
    set of counts (mig-parted configures counts, not slots), in a fixed order."""
    return _maximal(empty(model), profiles, driver)


@lru_cache(maxsize=65536)
def _maximal(start: Layout, profiles: frozenset[Profile], driver: int | None) -> tuple[Layout, ...]:
    """Branch on the lowest free slot: left empty, or where an instance of a profile starts."""
    model = start.model
    ordered = sorted(profiles, key=lambda p: p.name)
    found: dict[tuple[tuple[str, int], ...], Layout] = {}

    def grow(layout: Layout, skipped: int) -> None:
        blocked = layout.occupied | skipped
        free = ~blocked & model.full_mask
        if not free:
            if not any(layout.free_starts(p, driver) for p in ordered):
                found.setdefault(tuple(sorted(layout.counts().items())), layout)
            return
        slot = (free & -free).bit_length() - 1
        grow(layout, skipped | (1 << slot))
        for p in ordered:
            if slot in p.starts and not p.mask(slot) & blocked:
                grown = layout.adding(Instance(p, slot))
                if grown.valid(driver):
                    grow(grown, skipped)

    grow(start, 0)
    return tuple(found[k] for k in sorted(found))
