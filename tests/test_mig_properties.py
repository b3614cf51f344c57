"""For every GPU model in the catalog: no layout slotwise produces overlaps or uses an invalid
start slot, whether it comes from slot choice, the planner or the greedy fallback.

The check here is written from the reference geometry, apart from :mod:`mig.geometry`."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mig.catalog import MODELS, GpuModel
from mig.geometry import Instance, Layout, empty
from mig.planner import plan
from mig.slots import DemandMix, Fleet

models = st.sampled_from(sorted(MODELS.values(), key=lambda m: m.name))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_sound(layout: Layout) -> None:
    model = layout.model
    taken = [False] * model.memory_slices
    for inst in layout.instances:
        p = model.profile(inst.name)
        assert inst.start in p.starts, f"{p.name} at invalid slot {inst.start}"
        assert inst.start + p.size <= model.memory_slices
        for s in range(inst.start, inst.start + p.size):
            assert not taken[s], f"overlap at slot {s} in {layout}"
            taken[s] = True
    counts = layout.counts()
    assert all(n <= model.profile(name).max_count for name, n in counts.items())
    assert sum(n for name, n in counts.items() if name.endswith("+me")) <= 1
    assert sum(i.profile.compute for i in layout.instances) <= model.compute_slices


@st.composite
def gpu_layouts(draw, model: GpuModel) -> Layout:
    """A valid layout grown from random placements, some instances in use."""
    layout = empty(model)
    for _ in range(draw(st.integers(0, 4))):
        p = draw(st.sampled_from(model.profiles))
        starts = layout.free_starts(p)
        if starts:
            layout = layout.adding(Instance(p, draw(st.sampled_from(starts)), draw(st.booleans())))
    return layout


@SETTINGS
@given(data=st.data(), model=models, fixed=st.booleans())
def test_slot_choice_keeps_layouts_sound(data, model, fixed):
    gpus = data.draw(st.lists(gpu_layouts(model), min_size=1, max_size=4))
    names = [p.name for p in model.profiles]
    fleet = Fleet({"a": gpus[: len(gpus) // 2 + 1], "b": gpus[len(gpus) // 2 + 1:]}, fixed=fixed,
                  mix=DemandMix(initial=data.draw(st.lists(st.sampled_from(names), max_size=5))))
    bound: list[str] = []
    for step in range(data.draw(st.integers(1, 25))):
        if bound and data.draw(st.booleans()):
            fleet.release(bound.pop(data.draw(st.integers(0, len(bound) - 1))))
        else:
            name = data.draw(st.sampled_from(names))
            fleet.mix.observe(name)
            choice = fleet.choose(name)
            if choice is not None:
                fleet.bind(f"p{step}", choice)
                bound.append(f"p{step}")
        for layouts in fleet.layouts().values():
            for layout in layouts.values():
                assert_sound(layout)


@SETTINGS
@given(data=st.data(), model=models, greedy=st.booleans())
def test_planned_layouts_are_sound_and_busy_gpus_untouched(data, model, greedy):
    gpus = data.draw(st.lists(gpu_layouts(model), min_size=1, max_size=5))
    names = [p.name for p in model.profiles]
    demand = data.draw(st.dictionaries(st.sampled_from(names), st.integers(0, 6), max_size=4))
    result = plan({"n": gpus}, demand, solver="greedy" if greedy else "cp-sat", time_limit=5.0)
    for gpu in result.gpus:
        assert_sound(gpu.after)
        if gpu.before.busy:
            assert gpu.after == gpu.before
    assert all(result.served[p] <= n for p, n in result.demand.items())
