"""The safety property of gang scheduling, over generated arrivals and departures: no gang ever
has between 1 and minMember-1 members placed, and no GPU is booked twice by reservations."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings, strategies as st

from conftest import build_node, build_pod, build_snapshot
from scheduler.gang.groups import Gang
from scheduler.gang.queue import GangQueue
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile

nodes = st.lists(st.tuples(st.sampled_from([2, 4, 8]), st.integers(0, 2)), min_size=1, max_size=6)
gang_shapes = st.tuples(st.integers(1, 5), st.integers(1, 5), st.sampled_from([1, 2, 4, 250, 500]))
steps = st.lists(st.one_of(
    st.tuples(st.just("arrive"), gang_shapes),
    st.tuples(st.sampled_from(["bind", "finish", "evict"]), st.integers(0, 50)),
    st.tuples(st.just("tick"), st.sampled_from([10.0, 100.0, 700.0])),
), max_size=30)


def _check(queue: GangQueue, minimum: dict[str, int]) -> None:
    placed: dict[str, int] = defaultdict(int)
    for key in queue.snap.assignments:
        placed[key.rsplit("-w", 1)[0]] += 1
    for gang, count in placed.items():
        assert count >= minimum[gang], f"{gang} has {count} of at least {minimum[gang]} members placed"
    held: dict[tuple[int, int], int] = defaultdict(int)
    for a in queue.snap.assignments.values():
        for g in a.gpus:
            held[(a.node, g)] += a.pod.gpu.milli
    assert all(milli <= 1000 for milli in held.values())
    assert queue.reservations.booked_gpus() == {k: v for k, v in held.items() if v}
    members = [a.pod.key for r in queue.reservations.by_gang.values() for a in r.plan.assignments]
    assert len(members) == len(set(members)) == len(queue.reservations.gang_of)


@settings(max_examples=150, deadline=None)
@given(nodes, steps)
def test_no_gang_is_ever_partly_placed_and_no_gpu_is_double_booked(shape, plan):
    snap = build_snapshot([build_node(f"n{i}", gpus=g, labels={"slotwise.io/rack": f"r{r}"})
                           for i, (g, r) in enumerate(shape)])
    queue = GangQueue(Placer(build_profile("default", rng=np.random.default_rng(0))), snap)
    minimum: dict[str, int] = {}
    now = 0.0
    for n, (what, arg) in enumerate(plan):
        if what == "arrive":
            size, wanted, gpus = arg
            name = f"default/g{n}"
            members = tuple(build_pod(f"g{n}-w{k}", cpu=1000, **({"share": gpus} if gpus > 8 else {"gpus": gpus}))
                            for k in range(size))
            minimum[name] = min(wanted, size)
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
