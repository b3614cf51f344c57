"""The share packings that `python3 benchmarks/simulation.py headroom` compares the default profile with."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.simulation import fewest_gpus, first_fit_decreasing


def test_share_packings_by_hand():
    assert first_fit_decreasing([470, 60, 810, 470, 190]) == 2  # 810 + 190, 470 + 470 + 60
    assert first_fit_decreasing([300] * 7) == 3
    assert first_fit_decreasing([]) == 0
    assert fewest_gpus([]) == 0
    # Three shares above half a GPU pair with nothing: the fewest sees it, their sum does not.
    assert fewest_gpus([600, 600, 600]) == 3 > math.ceil(1800 / 1000)
    assert fewest_gpus([810, 190, 810, 190]) == 2
    # First-fit decreasing puts 500 with 400 and strands the 300s: 500+300+200, 400+300+300 fit in two.
    shares = [500, 400, 300, 300, 300, 200]
    assert first_fit_decreasing(shares) == 3
    assert fewest_gpus(shares) == 2


def _fewest_by_search(shares: list[int]) -> int:
    """Every way of putting the shares, one by one, on a GPU already in use or a new one."""
    best = len(shares)

    def place(i: int, room: list[int]) -> None:
        nonlocal best
        if len(room) >= best:
            return
        if i == len(shares):
            best = len(room)
            return
        for gpu in range(len(room)):
            if room[gpu] >= shares[i]:
                room[gpu] -= shares[i]
                place(i + 1, room)
                room[gpu] += shares[i]
        place(i + 1, [*room, 1000 - shares[i]])

    place(0, [])
    return best


@given(st.lists(st.sampled_from([110, 190, 230, 320, 470, 500, 650, 810]), max_size=9))
def test_fewest_is_what_a_search_of_every_packing_finds(shares):
    assert fewest_gpus(shares) == _fewest_by_search(shares)


@settings(deadline=None)  # a CP-SAT solve over a hundred fill levels takes up to a few tenths of a second
@given(st.lists(st.integers(1, 100).map(lambda tenths: 10 * tenths), max_size=60))  # openb's shares: tens of milli
def test_fewest_lies_between_the_sum_and_first_fit_decreasing(shares):
    assert math.ceil(sum(shares) / 1000) <= fewest_gpus(shares) <= first_fit_decreasing(shares)
