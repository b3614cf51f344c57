"""Repartition planning: serve pending demand with free GPUs, touch few, never a busy one."""

from __future__ import annotations

import random

import yaml

from mig.catalog import MODELS
from mig.geometry import Instance, Layout, empty
from mig.optimum import optimum_slices
from mig.parted import CONFIG_LABEL, parted_configs, render
from mig.planner import plan

A100 = MODELS["A100-80GB"]
SIZES = {p.name: p.size for p in A100.profiles}


def test_demand_is_served_with_the_fewest_gpus_touched():
    layouts = {"n": [empty(A100)] * 8}
    result = plan(layouts, {"2g.20gb": 6, "3g.40gb": 2})
    assert result.solver == "cp-sat" and result.optimal
    assert result.served == {"2g.20gb": 6, "3g.40gb": 2}
    assert len(result.changed) == 3  # 2g+2g+3g twice, then 2g x3 (or the like): 3 GPUs at best


def test_busy_gpus_keep_their_layout_and_lend_their_idle_instances():
    busy = Layout.parse(A100, [("3g.40gb", 0)], in_use=True).adding(Instance(A100.profile("2g.20gb"), 4))
    idle = Layout.parse(A100, [("1g.10gb", s) for s in range(7)])
    result = plan({"n": [busy, idle]}, {"2g.20gb": 1, "4g.40gb": 1})
    assert result.gpus[0].after == busy
    assert result.served == {"2g.20gb": 1, "4g.40gb": 1}
    assert [g.index for g in result.changed] == [1]  # only the wholly free GPU is repartitioned
    assert result.gpus[1].after.counts()["4g.40gb"] == 1


def test_a_gpu_whose_layout_already_serves_is_not_touched():
    layouts = {"n": [Layout.parse(A100, [("3g.40gb", 0), ("3g.40gb", 4)]), empty(A100)]}
    result = plan(layouts, {"3g.40gb": 2})
    assert not result.changed


def test_unknown_profiles_are_noted_not_planned():
    result = plan({"n": [empty(A100)]}, {"3g.20gb": 2, "7g.80gb": 1})
    assert result.notes == ("no GPU here offers 3g.20gb",)
    assert result.served == {"3g.20gb": 0, "7g.80gb": 1}


def test_planner_and_greedy_against_the_placement_level_optimum():
    rng = random.Random(3)
    names = ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]
    for _ in range(8):
        gpus = []
        for _ in range(rng.randint(2, 6)):
            layout = empty(A100)
            if rng.random() < 0.4:
                p = A100.profile(rng.choice(names[:5]))
                layout = layout.adding(Instance(p, rng.choice(p.starts), True))
            gpus.append(layout)
        demand = {n: rng.randint(0, 4) for n in rng.sample(names, 3)}
        best, proven = optimum_slices({"n": gpus}, demand)
        assert proven
        assert plan({"n": gpus}, demand).served_slices(SIZES) == best
        assert plan({"n": gpus}, demand, solver="greedy").served_slices(SIZES) <= best


def test_greedy_fallback_when_cp_sat_is_skipped():
    result = plan({"n": [empty(A100)] * 2}, {"4g.40gb": 1, "3g.40gb": 1}, solver="greedy")
    assert result.solver == "greedy" and not result.optimal
    assert result.served == {"4g.40gb": 1, "3g.40gb": 1}
    assert len(result.changed) == 1  # 4g at 0 and 3g at 4 on one GPU


def test_mig_parted_config_per_gpu_index_and_the_node_label():
    busy = Layout.parse(A100, [("3g.40gb", 4)], in_use=True)
    result = plan({"gpu-a1": [busy, empty(A100)], "gpu-a2": [empty(A100)]}, {"2g.20gb": 5})
    document, labels = parted_configs(result)
    assert document["version"] == "v1"
    assert list(labels) == ["gpu-a1", "gpu-a2"]
    assert len(result.changed) == 2  # the two free GPUs; the busy one is never touched
    entries = document["mig-configs"][labels["gpu-a1"][CONFIG_LABEL]]
    assert entries == [
        {"devices": [0], "mig-enabled": True, "mig-devices": {"3g.40gb": 1}},  # busy GPU: as it is
        {"devices": [1], "mig-enabled": True, "mig-devices": {"2g.20gb": 3}},
    ]
    text = render(result)
    assert f"kubectl label node gpu-a1 {CONFIG_LABEL}=slotwise-" in text
    assert yaml.safe_load(text) == document
