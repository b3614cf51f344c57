"""The safety property of gang scheduling, over generated arrivals and departures: no gang ever
has between 1 and minMember-1 members placed, every placed member's constraints hold on its
node, and no GPU is booked twice by reservations. Gangs mix members of different shapes (GPU
counts, shares, models, node selectors), so one member that fits nowhere must hold back all."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import example, given, settings, strategies as st

from conftest import build_node, build_pod, build_snapshot
from scheduler.gang.groups import Gang
from scheduler.gang.planner import GangPlan, GangUnplaceable, commit, plan_gang
from scheduler.gang.queue import GangQueue
from scheduler.gang.topology import Topology
from scheduler.model.cluster import Pod
from scheduler.model.gpu_models import accepts_model
from scheduler.model.snapshot import Snapshot
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile

# A node: GPUs, GPU model, pool label, rack.
nodes = st.lists(st.tuples(st.sampled_from([0, 2, 4, 8]), st.sampled_from(["A100", "H100"]),
                           st.sampled_from(["a", "b"]), st.integers(0, 2)), min_size=1, max_size=6)
# A member: 0-8 whole GPUs or a share (milli), the GPU models it accepts, the pool it selects.
member_st = st.tuples(st.sampled_from([0, 1, 2, 4, 8, 250, 500, 750]),
                      st.sampled_from([None, "A100", "H100", "A100|H100"]), st.sampled_from([None, "a", "b"]))
gang_shapes = st.tuples(st.lists(member_st, min_size=1, max_size=5), st.integers(1, 5))
steps = st.lists(st.one_of(
    st.tuples(st.just("arrive"), gang_shapes),
    st.tuples(st.sampled_from(["bind", "finish", "evict"]), st.integers(0, 50)),
    st.tuples(st.just("tick"), st.sampled_from([10.0, 100.0, 700.0])),
), max_size=30)


def build_nodes(shape) -> list:
    return [build_node(f"n{i}", gpus=g, model=model, labels={"slotwise.io/rack": f"r{r}", "pool": pool})
            for i, (g, model, pool, r) in enumerate(shape)]


def build_member(name: str, gpus: int, models: str | None, pool: str | None) -> Pod:
    size = {"share": gpus} if gpus > 8 else {"gpus": gpus}
    return build_pod(name, cpu=1000, models=models if gpus else None, node_selector={"pool": pool} if pool else {},
                     **size)


def satisfied(snap: Snapshot, pod: Pod, node: int) -> bool:
    """The member's own constraints hold on the node: its GPU model and its node selector."""
    n = snap.nodes[node]
    if pod.gpu is not None and not (n.gpu_count and accepts_model(pod.gpu.models, n.gpu_model)):
        return False
    return all(n.labels.get(k) == v for k, v in pod.node_selector.items())


def not_overcommitted(snap: Snapshot) -> None:
    held: dict[tuple[int, int], int] = defaultdict(int)
    for a in snap.assignments.values():
        assert len(a.gpus) == len(set(a.gpus)) == (a.pod.gpu.count if a.pod.gpu else 0)
        for g in a.gpus:
            assert 0 <= g < snap.gpu_count[a.node]
            held[(a.node, g)] += a.pod.gpu.milli
    assert all(milli <= 1000 for milli in held.values())
    assert (snap.free >= 0).all() and (snap.gpu_free[snap.gpu_free != -1] >= 0).all()


def _check(queue: GangQueue, minimum: dict[str, int]) -> None:
    placed: dict[str, int] = defaultdict(int)
    for key, a in queue.snap.assignments.items():
        placed[key.rsplit("-w", 1)[0]] += 1
        assert satisfied(queue.snap, a.pod, a.node), f"{key} placed on {queue.snap.names[a.node]}"
    for gang, count in placed.items():
        assert count >= minimum[gang], f"{gang} has {count} of at least {minimum[gang]} members placed"
    not_overcommitted(queue.snap)
    held: dict[tuple[int, int], int] = defaultdict(int)
    for a in queue.snap.assignments.values():
        for g in a.gpus:
            held[(a.node, g)] += a.pod.gpu.milli
    assert queue.reservations.booked_gpus() == {k: v for k, v in held.items() if v}
    members = [a.pod.key for r in queue.reservations.by_gang.values() for a in r.plan.assignments]
    assert len(members) == len(set(members)) == len(queue.reservations.gang_of)


# A 4-GPU member and an H100-only one on an A100 node: the gang must wait whole.
@example(shape=[(8, "A100", "a", 0)], plan=[("arrive", ([(4, None, None), (1, "H100", None)], 2))])
@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(nodes, steps)
def test_no_gang_is_ever_partly_placed_and_no_gpu_is_double_booked(shape, plan):
    snap = build_snapshot(build_nodes(shape))
    queue = GangQueue(Placer(build_profile("default", rng=np.random.default_rng(0))), snap)
    minimum: dict[str, int] = {}
    now = 0.0
    for n, (what, arg) in enumerate(plan):
        if what == "arrive":
            specs, wanted = arg
            name = f"default/g{n}"
            members = tuple(build_member(f"g{n}-w{k}", *spec) for k, spec in enumerate(specs))
            minimum[name] = min(wanted, len(specs))
            queue.submit([Gang(name, members, minimum[name], timeout_s=600)], now)
        elif what == "tick":
            now += arg
        elif queue.reservations.by_gang:
            gang = sorted(queue.reservations.by_gang)[arg % len(queue.reservations.by_gang)]
            member = sorted(a.pod.key for a in queue.reservations.by_gang[gang].plan.assignments)[0]
            {"bind": lambda: queue.bind(member), "finish": lambda: queue.finish(gang),
             "evict": lambda: queue.evict(member)}[what]()
        _check(queue, minimum)
        queue.schedule(now)
        _check(queue, minimum)


def _state(snap: Snapshot) -> tuple[bytes, bytes, frozenset[str]]:
    return snap.free.tobytes(), snap.gpu_free.tobytes(), frozenset(snap.assignments)


# A 4-GPU member and an H100-only one on A100 nodes: the second fits nowhere, so neither goes.
@example(shape=[(8, "A100", "a", 0), (8, "A100", "a", 0)], busy=[], specs=[(4, None, None), (1, "H100", None)],
         wanted=2)
@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(nodes, st.lists(member_st, max_size=4), st.lists(member_st, min_size=1, max_size=5), st.integers(1, 5))
def test_a_plan_places_every_member_or_its_minimum_each_where_it_may_go_or_nothing(shape, busy, specs, wanted):
    snap = build_snapshot(build_nodes(shape))
    placer = Placer(build_profile("default", rng=np.random.default_rng(0)))
    for k, spec in enumerate(busy):  # some room already taken, wherever the placer puts it
        pod = build_member(f"busy{k}", *spec)
        decision = placer.decide(snap, pod)
        if isinstance(decision, Placement):
            snap.assign(pod, decision.node_index, decision.gpus)
    gang = Gang("default/g", tuple(build_member(f"g-w{k}", *spec) for k, spec in enumerate(specs)),
                min(wanted, len(specs)))
    before = _state(snap)
    decision = plan_gang(placer, snap, gang, Topology(snap))
    assert _state(snap) == before, "planning changed the snapshot"
    if isinstance(decision, GangUnplaceable):
        return
    assert isinstance(decision, GangPlan)
    keys = [a.pod.key for a in decision.assignments]
    assert len(keys) == len(set(keys)) and set(keys) <= {p.key for p in gang.members}
    assert len(keys) in (len(gang.members), gang.min_members), f"{len(keys)} of {len(gang.members)} placed"
    for a in decision.assignments:
        assert satisfied(snap, a.pod, a.node), f"{a.pod.key} planned on {snap.names[a.node]}"
    commit(snap, decision)
    not_overcommitted(snap)
