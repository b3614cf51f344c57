"""Slot choice: which free valid slot a pod's MIG instance gets, alone and inside the placement engine."""

from __future__ import annotations

import pytest
from conftest import build_node, build_pod

from mig.catalog import MODELS
from mig.geometry import Layout, empty
from mig.plugin import advertised, mig_placer
from mig.slots import DemandMix, Fleet
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Placement, Unschedulable
from scheduler.placement.profile import build_profile

A100 = MODELS["A100-80GB"]
SEED_MIX = ("2g.20gb", "3g.40gb", "4g.40gb")


def busy(*placements):
    return Layout.parse(A100, placements, in_use=True)


def test_a_2g_goes_where_it_strands_nothing():
    fleet = Fleet({"n": [empty(A100)]}, mix=DemandMix(initial=SEED_MIX))
    first = fleet.choose("2g.20gb")
    assert (first.start, first.waste) == (0, 0)
    fleet.bind("a", first)
    fleet.bind("b", fleet.choose("2g.20gb"))
    third = fleet.choose("2g.20gb")  # slot 4 would strand 6-7 for this mix: still the only slot left
    assert (third.start, third.waste) == (4, 2)


def test_fuller_gpus_first_so_whole_gpus_stay_free():
    fleet = Fleet({"a": [empty(A100), busy(("3g.40gb", 4))], "b": [empty(A100)]}, mix=DemandMix(initial=SEED_MIX))
    choice = fleet.choose("3g.40gb")
    assert (choice.node, choice.gpu, choice.start) == ("a", 1, 0)
    assert fleet.choose("3g.40gb", nodes=["b"]).node == "b"
    assert fleet.choose("3g.40gb", nodes=["elsewhere"]) is None


def test_profile_names_are_read_per_gpu_model():
    fleet = Fleet({"old": [empty(MODELS["A100-40GB"])], "new": [empty(A100)]})
    on_old = fleet.choose("1g.10gb", ["old"])
    on_new = fleet.choose("1g.10gb", ["new"])
    assert (on_old.profile.size, on_new.profile.size) == (2, 1)  # double-memory 1g on A100-40GB
    assert Fleet({"n": [empty(A100)]}).choose("3g.20gb") is None


def test_bind_and_release_keep_the_instance_idle():
    fleet = Fleet({"n": [empty(A100)]})
    fleet.bind("p", fleet.choose("4g.40gb"))
    assert str(fleet.layout("n", 0)) == "4g.40gb@0*"
    with pytest.raises(ValueError, match="already holds"):
        fleet.bind("p", fleet.choose("3g.40gb"))
    fleet.release("p")
    assert str(fleet.layout("n", 0)) == "4g.40gb@0"
    again = fleet.choose("4g.40gb")
    assert again.reuses and again.start == 0


def test_idle_instances_in_the_way_are_replaced_unless_layouts_are_fixed():
    idle = Layout.parse(A100, [("1g.10gb", 0), ("1g.10gb", 1)])
    dynamic = Fleet({"n": [idle]})
    dynamic.bind("p", dynamic.choose("4g.40gb"))
    assert str(dynamic.layout("n", 0)) == "4g.40gb@0*"
    fixed = Fleet({"n": [idle]}, fixed=True)
    assert fixed.choose("4g.40gb") is None
    taken = fixed.choose("1g.10gb")
    assert taken.reuses
    fixed.bind("q", taken)
    assert str(fixed.layout("n", 0)) == "1g.10gb@0* 1g.10gb@1"


def test_demand_mix_keeps_the_recent_profiles():
    mix = DemandMix(window=4)
    for name in ("3g.40gb", "2g.20gb", "2g.20gb", "1g.10gb", "2g.20gb"):
        mix.observe(name)
    assert mix.weights() == {("2g.20gb", 10), ("1g.10gb", 3)}  # the 3g left the window
    for _ in range(40):
        mix.observe("2g.20gb")
    assert mix.weights() == {("2g.20gb", 10)}


def _cluster():
    extra = dict(advertised(A100, 2))
    nodes = [build_node(n, gpus=2, model="NVIDIA-A100-SXM4-80GB", extra=extra) for n in ("n1", "n2", "n3")]
    fleet = Fleet({"n1": [empty(A100), empty(A100)], "n2": [busy(("3g.40gb", 4)), empty(A100)], "n3": [busy(("7g.80gb", 0))] * 2})
    return Snapshot(nodes), fleet


def test_engine_places_mig_pods_on_the_node_with_the_best_slot():
    snap, fleet = _cluster()
    placer = mig_placer(fleet, build_profile("gpu-pack"))
    pod = build_pod("a", extra={"nvidia.com/mig-3g.40gb": 1})
    decision = placer.decide(snap, pod)
    assert isinstance(decision, Placement) and decision.node == "n2"
    assert dict(decision.scores)["mig-slots"] == 100.0
    choice = fleet.choose("3g.40gb", [decision.node])
    assert (choice.gpu, choice.start) == (0, 0)


def test_engine_explains_nodes_without_a_slot():
    snap, fleet = _cluster()
    placer = mig_placer(fleet, build_profile("default"))
    fleet.bind("x", fleet.choose("7g.80gb", ["n1"]))
    fleet.bind("y", fleet.choose("7g.80gb", ["n1"]))
    fleet.bind("z", fleet.choose("7g.80gb", ["n2"]))
    fleet.bind("w", fleet.choose("4g.40gb", ["n2"]))  # beside the 3g at slot 4
    decision = placer.decide(snap, build_pod("b", extra={"nvidia.com/mig-4g.40gb": 1}))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/3 nodes are available: 3 no free valid MIG slot for 4g.40gb."
    two = placer.decide(snap, build_pod("c", extra={"nvidia.com/mig-1g.10gb": 2}))
    assert "one instance per pod" in two.message


def test_pods_without_mig_are_left_to_the_other_policies():
    snap, fleet = _cluster()
    placer = mig_placer(fleet, build_profile("default"))
    decision = placer.decide(snap, build_pod("cpu"))
    assert isinstance(decision, Placement) and "mig-slots" not in dict(decision.scores)
