"""Replay, as benchmarks/cluster.py holds the live cluster to it: the first GPU share on a GPU
brings its group's reservation pod to the node, and fits only where that pod fits beside it."""

from __future__ import annotations

from simulator.replay import replay
from tests.conftest import GiB, build_node, build_pod

MiB = 2**20
ROOM = build_pod("reservation", cpu=10, memory=64 * MiB)
NO_ROOM = build_pod("reservation", cpu=0, memory=0)


def test_a_share_that_starts_a_group_goes_where_its_reservation_fits_beside_it():
    tight = build_node("a-tight", cpu=8_000, memory=64 * GiB, gpus=1)
    roomy = build_node("b-roomy", cpu=64_000, memory=256 * GiB, gpus=1)
    share = build_pod("s1", cpu=8_000, memory=8 * GiB, share=500)
    # bestfit takes the node the share fills exactly, unless its reservation pod must fit too
    assert replay([tight, roomy], [share], "bestfit", group_room=NO_ROOM) == {"default/s1": "a-tight"}
    assert replay([tight, roomy], [share], "bestfit", group_room=ROOM) == {"default/s1": "b-roomy"}


def test_a_share_that_joins_a_group_needs_no_room_and_each_new_group_needs_its_own():
    shares = [build_pod(f"s{i}", cpu=4_000, memory=GiB, share=600) for i in (1, 2)]  # two cannot share a GPU
    enough = build_node("n1", cpu=8_020, memory=64 * GiB, gpus=2)
    assert replay([enough], shares, "default", group_room=ROOM) == {"default/s1": "n1", "default/s2": "n1"}
    short = build_node("n1", cpu=8_015, memory=64 * GiB, gpus=2)  # room for one reservation pod, not two
    assert replay([short], shares, "default", group_room=ROOM) == {"default/s1": "n1", "default/s2": None}
    halves = [build_pod(f"h{i}", cpu=4_000, memory=GiB, share=500) for i in (1, 2)]  # one GPU, one group
    assert replay([short], halves, "default", group_room=ROOM) == {"default/h1": "n1", "default/h2": "n1"}
