from __future__ import annotations

import numpy as np
import pytest

from conftest import build_node, build_pod, build_snapshot
from scheduler.gang.groups import Gang
from scheduler.gang.planner import GangPlan, GangUnplaceable, commit, plan_gang
from scheduler.gang.queue import GangQueue, TimedOut, whole_gangs
from scheduler.gang.topology import Level, Topology
from scheduler.model.snapshot import OvercommitError
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile


def placer() -> Placer:
    return Placer(build_profile("default", rng=np.random.default_rng(0)))


def rack(name: str, zone: str = "z0") -> dict[str, str]:
    return {"slotwise.io/rack": name, "topology.kubernetes.io/zone": zone}


def gang(name: str, members: int, gpus: int, minimum: int | None = None, timeout: float = 600.0) -> Gang:
    pods = tuple(build_pod(f"{name}-w{k}", gpus=gpus, cpu=4000) for k in range(members))
    return Gang(f"default/{name}", pods, minimum or members, timeout)


def four_nodes_two_racks(**bound):
    nodes = [build_node(n, gpus=4, labels=rack(r, z)) for n, r, z in
             (("a1", "ra", "z0"), ("a2", "ra", "z0"), ("b1", "rb", "z1"), ("b2", "rb", "z1"))]
    return build_snapshot(nodes, [build_pod(f"busy-{n}", gpus=g, on=n, at=range(g)) for n, g in bound.items()])


def test_a_gang_goes_on_the_fewest_nodes():
    snap = build_snapshot([build_node(f"n{i}", gpus=8, labels=rack("r0")) for i in range(3)])
    plan = plan_gang(placer(), snap, gang("g", 2, 4), Topology(snap))
    assert isinstance(plan, GangPlan) and len(plan.nodes) == 1 and plan.level == Level.NODE


def test_a_gang_that_needs_two_nodes_takes_both_in_one_rack():
    snap = four_nodes_two_racks(a2=2)  # rack ra cannot hold two 4-GPU members any more
    plan = plan_gang(placer(), snap, gang("g", 2, 4), Topology(snap))
    assert isinstance(plan, GangPlan)
    assert sorted(snap.names[n] for n in plan.nodes) == ["b1", "b2"] and plan.level == Level.RACK


def test_topology_distance_is_defined_by_the_tree():
    snap = four_nodes_two_racks()
    topology = Topology(snap)
    a1, a2, b1 = (snap.index[n] for n in ("a1", "a2", "b1"))
    assert (topology.distance(a1, a1), topology.distance(a1, a2), topology.distance(a1, b1)) == (0, 2, 6)


def test_all_or_nothing_leaves_the_snapshot_untouched():
    snap = four_nodes_two_racks(a1=4, a2=4)
    before = snap.gpu_free.copy()
    decision = plan_gang(placer(), snap, gang("g", 3, 4), Topology(snap))
    assert isinstance(decision, GangUnplaceable)
    assert "needs 3 members at once (12 GPUs)" in decision.reason and "room for 2" in decision.reason
    assert (snap.gpu_free == before).all() and set(snap.assignments) == {"default/busy-a1", "default/busy-a2"}


def test_an_elastic_gang_starts_with_its_minimum_when_not_all_fit():
    snap = four_nodes_two_racks(a1=4, a2=4)
    plan = plan_gang(placer(), snap, gang("g", 3, 4, minimum=2), Topology(snap))
    assert isinstance(plan, GangPlan) and len(plan.assignments) == 2


def test_commit_of_a_stale_plan_assigns_nothing():
    snap = four_nodes_two_racks()
    plan = plan_gang(placer(), snap, gang("g", 2, 4), Topology(snap))
    snap.assign(build_pod("thief", gpus=1), plan.assignments[1].node)
    with pytest.raises(OvercommitError):
        commit(snap, plan)
    assert set(snap.assignments) == {"default/thief"}


def test_a_reservation_keeps_its_room_from_later_gangs():
    snap = four_nodes_two_racks()
    queue = GangQueue(placer(), snap)
    queue.submit([gang("first", 2, 4), gang("second", 3, 4)], now=0)
    out = queue.schedule(now=0)
    assert [type(d) for d in out] == [GangPlan]
    assert "needs 3 members at once" in queue.why("default/second")


def test_unbound_reservations_and_unplaceable_gangs_time_out_and_release_everything():
    snap = four_nodes_two_racks()
    queue = GangQueue(placer(), snap)
    queue.submit([gang("a", 2, 4, timeout=60), gang("b", 5, 4, timeout=30)], now=0)
    queue.schedule(now=0)
    queue.bind("default/a-w0")
    out = queue.schedule(now=60)
    timed_out = {d.gang: d for d in out if isinstance(d, TimedOut)}
    assert set(timed_out) == {"default/a", "default/b"}
    assert set(timed_out["default/a"].released) == {"default/a-w0", "default/a-w1"}
    assert "did not bind within 60 s" in timed_out["default/a"].reason
    assert "gave up after 30 s" in timed_out["default/b"].reason
    assert not snap.assignments


def test_evicting_one_member_evicts_the_gang():
    snap = four_nodes_two_racks()
    queue = GangQueue(placer(), snap)
    queue.submit([gang("g", 3, 4)], now=0)
    queue.schedule(now=0)
    assert sorted(queue.evict("default/g-w1")) == ["default/g-w0", "default/g-w1", "default/g-w2"]
    assert not snap.assignments
    assert whole_gangs(["x", "m1"], {"m1": "g"}, {"g": ("m0", "m1")}) == ["x", "m0", "m1"]


def test_a_gang_with_one_member_that_fits_nowhere_places_none_of_them():
    # The 4-GPU member fits either A100 node; the H100-only member fits neither: no plan at all.
    snap = build_snapshot([build_node(f"n{i}", gpus=8, model="A100", labels=rack("r0")) for i in range(2)])
    members = (build_pod("g-w0", gpus=4, cpu=4000), build_pod("g-w1", gpus=1, cpu=4000, models="H100"))
    decision = plan_gang(placer(), snap, Gang("default/g", members, 2, 600.0), Topology(snap))
    assert isinstance(decision, GangUnplaceable)
    assert not snap.assignments and (snap.gpu_free == 1000).all()


def test_members_of_different_shapes_each_go_where_their_constraints_allow():
    # n0: 8 A100 in pool a; n1: 4 H100 in pool b. The 4-GPU member (biggest) goes first, onto the
    # node with room for most like it (n0); the pool-a 1-GPU member joins it; the H100-only share
    # can only go to n1.
    snap = build_snapshot([build_node("n0", gpus=8, model="A100", labels={**rack("r0"), "pool": "a"}),
                           build_node("n1", gpus=4, model="H100", labels={**rack("r0"), "pool": "b"})])
    members = (build_pod("g-w0", gpus=4), build_pod("g-w1", share=500, models="H100"),
               build_pod("g-w2", gpus=1, node_selector={"pool": "a"}))
    plan = plan_gang(placer(), snap, Gang("default/g", members, 3, 600.0), Topology(snap))
    assert isinstance(plan, GangPlan) and plan.level == Level.RACK
    assert {a.pod.name: (snap.names[a.node], a.gpus) for a in plan.assignments} == {
        "g-w0": ("n0", (0, 1, 2, 3)), "g-w2": ("n0", (4,)), "g-w1": ("n1", (0,))}


def test_an_elastic_gang_of_mixed_members_starts_with_its_minimum_when_one_cannot_fit():
    # Three members, at least two: the H100-only one has no H100 to go to, so the other two start.
    snap = build_snapshot([build_node("n0", gpus=8, model="A100", labels=rack("r0"))])
    members = (build_pod("g-w0", gpus=4), build_pod("g-w1", gpus=2), build_pod("g-w2", gpus=1, models="H100"))
    plan = plan_gang(placer(), snap, Gang("default/g", members, 2, 600.0), Topology(snap))
    assert isinstance(plan, GangPlan)
    assert sorted(a.pod.name for a in plan.assignments) == ["g-w0", "g-w1"]
