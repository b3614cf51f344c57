"""The share packings that `python3 benchmarks/simulation.py headroom` compares the default profile with."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.simulation import fewest_gpus, first_fit_decreasing


def test_share_packings_by_hand():
    assert first_fit_decreasing([470, 60, 810, 470, 190]) == 2  # 810 + 190, 470 + 470 + 60
    assert first_fit_decreasing([300] * 7) == 3
    assert first_fit_decreasing([]) == 0
    # Three shares above half a GPU pair with nothing: the bound sees it, their sum does not.
    assert fewest_gpus([600, 600, 600]) == 3 > math.ceil(1800 / 1000)
    assert fewest_gpus([810, 190, 810, 190]) == 2


@given(st.lists(st.integers(1, 1000), max_size=60))
def test_no_packing_needs_fewer_gpus_than_the_bound(shares):
    assert math.ceil(sum(shares) / 1000) <= fewest_gpus(shares) <= first_fit_decreasing(shares)
