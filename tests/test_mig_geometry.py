"""Layouts on one GPU: validity, free placements, what demand can still fill."""

from __future__ import annotations

from mig.catalog import MODELS
from mig.geometry import Layout, empty, fillable, maximal_layouts

A100 = MODELS["A100-80GB"]


def layout(*placements, in_use=False):
    return Layout.parse(A100, placements, in_use)


def test_reference_consequences():
    assert layout(("4g.40gb", 0), ("3g.40gb", 4)).valid()
    assert "needs driver R510" in layout(("4g.40gb", 0), ("3g.40gb", 4)).problems(driver=470)[0]
    assert layout(("4g.40gb", 0), ("3g.40gb", 4)).valid(driver=535)
    assert not layout(("2g.20gb", 6)).valid()  # a 2g never starts at slot 6
    assert "overlaps" in layout(("1g.20gb", 0), ("1g.10gb", 1)).problems()[0]  # double memory blocks its neighbour
    assert "one +me" in " ".join(layout(("1g.10gb+me", 0), ("1g.10gb+me", 1)).problems())
    assert layout(("3g.40gb", 0), ("3g.40gb", 4)).valid()  # leaves one compute slice idle
    assert "4 x 2g.20gb" in " ".join(Layout.parse(A100, [("2g.20gb", s) for s in (0, 2, 4, 4)]).problems())


def test_4g_beside_3g_needs_driver_r510_itself_or_later():
    both = layout(("4g.40gb", 0), ("3g.40gb", 4))
    assert both.problems(driver=510) == []
    assert both.problems(driver=509) == ["4g together with 3g needs driver R510 or later, this node has R509"]
    assert layout(("4g.40gb", 0)).free_starts(A100.profile("3g.40gb"), driver=510) == (4,)
    assert layout(("4g.40gb", 0)).free_starts(A100.profile("3g.40gb"), driver=509) == ()


def test_free_starts_respect_slots_and_occupancy():
    assert empty(A100).free_starts(A100.profile("2g.20gb")) == (0, 2, 4)
    assert layout(("3g.40gb", 4)).free_starts(A100.profile("2g.20gb")) == (0, 2)
    assert layout(("1g.10gb", 0)).free_starts(A100.profile("4g.40gb")) == ()
    assert layout(("4g.40gb", 0)).free_starts(A100.profile("3g.40gb"), driver=470) == ()


def test_fillable_counts_slices_the_mix_can_still_take():
    mix = frozenset((A100.profile(n), 1) for n in ("2g.20gb", "3g.40gb", "4g.40gb"))
    assert fillable(empty(A100), mix) == 8
    assert fillable(layout(("2g.20gb", 0)), mix) == 6  # 2g at 2, 3g at 4
    assert fillable(layout(("2g.20gb", 4)), mix) == 4  # slots 6-7 stranded
    assert fillable(layout(("2g.20gb", 4)), mix | {(A100.profile("1g.10gb"), 1)}) == 5  # 4g, 1g at 6; slot 7 needs a 2-slice
    # Weighted: when 2g is asked ten times as often as 4g, a second and third 2g are worth more.
    weighted = frozenset({(A100.profile("2g.20gb"), 10), (A100.profile("4g.40gb"), 1)})
    assert fillable(layout(("2g.20gb", 4)), weighted) == 40


def test_maximal_layouts_are_valid_distinct_and_full():
    mix = frozenset(A100.profile(n) for n in ("2g.20gb", "3g.40gb", "4g.40gb"))
    found = maximal_layouts(A100, mix)
    assert {str(x) for x in found} == {
        "3g.40gb@0 2g.20gb@4", "4g.40gb@0 2g.20gb@4", "2g.20gb@0 2g.20gb@2 3g.40gb@4",
        "2g.20gb@0 2g.20gb@2 2g.20gb@4", "4g.40gb@0 3g.40gb@4", "3g.40gb@0 3g.40gb@4"}
    assert all(x.valid() for x in found)
    assert len({tuple(sorted(x.counts().items())) for x in found}) == len(found)
