"""Quota decisions, scenario by scenario: admit, borrow (from whom), reclaim (whom), wait, deny.

Amounts are in quota units: cpu in millicores, memory in bytes, GPUs in milli-GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from quota.admission import Admit, Deny, Reclaim, Request, Wait, decide, plan_reclaim, pod_charge, request_for
from quota.config import config_from_yaml
from quota.ledger import Ledger, Workload
from scheduler.model.resources import CPU, GPU, MEMORY, PODS, Resources

GiB = 2**30
A100, T4 = f"{GPU}/A100", f"{GPU}/T4"


def ledger_of(yaml_text: str, capacity=None) -> Ledger:
    return Ledger(config_from_yaml(yaml_text), capacity)


def run(ledger: Ledger, key: str, pool: str, gpus: float = 0, *, model: str | None = None, priority: int = 0,
        at: float = 0.0, **amounts: int) -> Workload:
    """Charge a running workload of ``gpus`` GPUs (of ``model``) and other ``amounts``."""
    charge = dict(amounts)
    if gpus:
        charge[GPU] = int(gpus * 1000)
        if model:
            charge[model] = int(gpus * 1000)
    workload = Workload(key, pool, Resources(charge), priority, at)
    ledger.add(workload)
    return workload


def ask(pool: str, gpus: float = 0, key: str = "req", models=None, priority: int = 0, **amounts: int) -> Request:
    charge = dict(amounts) | ({GPU: int(gpus * 1000)} if gpus else {})
    return Request(key, pool, Resources(charge), priority, frozenset(models) if models else None)


def state(ledger: Ledger):
    return ([a.copy() for a in (ledger.usage, ledger.own, ledger.demand, ledger.claim)], dict(ledger.workloads))


def assert_unchanged(ledger: Ledger, before) -> None:
    arrays, workloads = state(ledger)
    for a, b in zip(arrays, before[0]):
        np.testing.assert_array_equal(a, b)
    assert workloads.keys() == before[1].keys()


# A two-level tree on A100s: nlp and vision under ai; nlp may lend 8 of its 12, vision 2 of its 10.
AI = """
pools:
- name: ai
  max: {nvidia.com/gpu/A100: 30}
  pools:
  - name: nlp
    guaranteed: {nvidia.com/gpu/A100: 12}
    shareable: {nvidia.com/gpu/A100: 8}
    max: {nvidia.com/gpu/A100: 16}
  - name: vision
    guaranteed: {nvidia.com/gpu/A100: 10}
    shareable: {nvidia.com/gpu/A100: 2}
    borrow_limit: {nvidia.com/gpu/A100: 3}
"""


def test_within_guarantee_is_admitted_on_the_governed_model():
    ledger = ledger_of(AI)
    run(ledger, "n1", "nlp", 8, model=A100)
    decision = decide(ledger, ask("nlp", 4), now=0)
    assert isinstance(decision, Admit) and decision.kind == "admit"
    assert decision.gpu_model == "A100"
    assert decision.borrowed == Resources() and decision.lenders == ()
    assert decision.reason == "project nlp: within its guarantee"
    assert decision.request.charged(decision.gpu_model, 5.0) == Workload("req", "nlp", Resources({GPU: 4000, A100: 4000}),
                                                                         0, 5.0)


def test_borrowing_names_the_lender_and_the_amount():
    ledger = ledger_of(AI)
    run(ledger, "n1", "nlp", 12, model=A100)
    decision = decide(ledger, ask("nlp", 2), now=0)
    assert isinstance(decision, Admit) and decision.kind == "borrow"
    assert decision.borrowed == Resources({A100: 2000})
    assert decision.lenders == (("vision", Resources({A100: 2000})),)
    assert decision.reason == "project nlp: borrows 2 GPU (A100) from vision"


def test_public_pools_lend_first_then_the_largest_idle_lender():
    ledger = ledger_of("""
pools:
- {name: nlp, guaranteed: {cpu: 4}}
- {name: big, guaranteed: {cpu: 10}, shareable: {cpu: 10}}
- {name: small, guaranteed: {cpu: 3}, shareable: {cpu: 3}}
- {name: spare, public: true, guaranteed: {cpu: 2}}
""")
    run(ledger, "n1", "nlp", cpu=4000)
    decision = decide(ledger, ask("nlp", cpu=5000), now=0)
    assert isinstance(decision, Admit)
    assert decision.borrowed == Resources({CPU: 5000})
    assert decision.lenders == (("spare", Resources({CPU: 2000})), ("big", Resources({CPU: 3000})))
    assert decision.reason == "project nlp: borrows 5 cpu from spare, big"


def test_loans_already_made_are_credited_to_lenders_first():
    ledger = ledger_of("""
pools:
- {name: nlp, guaranteed: {cpu: 4}}
- {name: other, guaranteed: {cpu: 0}}
- {name: spare, public: true, guaranteed: {cpu: 2}}
- {name: big, guaranteed: {cpu: 10}, shareable: {cpu: 10}}
""")
    run(ledger, "o1", "other", cpu=2000)  # other already holds the public pool's 2
    run(ledger, "n1", "nlp", cpu=4000)
    decision = decide(ledger, ask("nlp", cpu=1000), now=0)
    assert decision.lenders == (("big", Resources({CPU: 1000})),)


def test_borrowing_climbs_the_tree_to_the_parents_siblings():
    ledger = ledger_of(AI.replace("pools:\n- name: ai", "pools:\n- {name: spare, public: true, guaranteed: "
                                  "{nvidia.com/gpu/A100: 4}}\n- name: ai"))
    run(ledger, "n1", "nlp", 12, model=A100)
    decision = decide(ledger, ask("nlp", 4), now=0)
    assert decision.lenders == (("vision", Resources({A100: 2000})), ("spare", Resources({A100: 2000})))


def test_waiting_reason_names_need_free_guarantee_borrowable_and_cap():
    ledger = ledger_of(AI)
    run(ledger, "n1", "nlp", 8, model=A100)
    run(ledger, "v1", "vision", 8, model=A100)
    decision = decide(ledger, ask("nlp", 8), now=0)
    assert isinstance(decision, Wait)
    who, rest = decision.reason.split(": ", 1)
    facts, why = rest.split("; ")
    assert who == "project nlp"
    assert facts.split(", ") == ["needs 8 GPU (A100)", "has 4 of 12 guaranteed free", "2 borrowable from vision",
                                 "cap 16"]
    assert why == "the cluster has 0 GPU (A100) idle that is not reserved"


def test_waiting_reason_names_an_ancestors_max():
    ledger = ledger_of(AI.replace("max: {nvidia.com/gpu/A100: 30}", "max: {nvidia.com/gpu/A100: 18}"))
    run(ledger, "n1", "nlp", 12, model=A100)
    run(ledger, "v1", "vision", 4, model=A100)
    decision = decide(ledger, ask("nlp", 4), now=0)
    assert isinstance(decision, Wait)
    assert decision.reason == ("project nlp: needs 4 GPU (A100), has 0 of 12 guaranteed free, "
                               "2 borrowable from vision, cap 16; pool ai is at its max of 18 GPU (A100)")


@pytest.mark.parametrize("pool, gpus, words", [
    ("nlp", 17, "needs 17 GPU (A100), more than the max of pool nlp (16 GPU (A100))"),
    ("vision", 14, "needs 14 GPU (A100), more than the guarantee plus borrow limit of pool vision (13 GPU (A100))"),
    ("vision", 13, None),  # exactly the guarantee plus the borrow limit: possible, so not denied
])
def test_deny_what_can_never_fit(pool, gpus, words):
    decision = decide(ledger_of(AI), ask(pool, gpus), now=0)
    if words is None:
        assert not isinstance(decision, Deny)
    else:
        assert isinstance(decision, Deny) and decision.reason == f"project {pool}: {words}"


def test_deny_above_an_ancestors_max():
    ledger = ledger_of(AI.replace("max: {nvidia.com/gpu/A100: 16}", "max: {nvidia.com/gpu/A100: 40}"))
    decision = decide(ledger, ask("nlp", 31), now=0)
    assert isinstance(decision, Deny)
    assert decision.reason == "project nlp: needs 31 GPU (A100), more than the max of pool ai (30 GPU (A100))"


@pytest.mark.parametrize("pool, words", [
    ("spare", "pool spare is public: it lends to every project and takes no work of its own"),
    ("nobody", "no pool 'nobody'"),
    ("cluster", "no pool 'cluster'"),
])
def test_deny_public_and_unknown_pools(pool, words):
    ledger = ledger_of("pools: [{name: nlp, guaranteed: {cpu: 4}}, {name: spare, public: true, guaranteed: {cpu: 4}}]")
    decision = decide(ledger, ask(pool, cpu=1000), now=0)
    assert isinstance(decision, Deny) and words in decision.reason


def test_private_pool_never_lends_even_when_idle():
    ledger = ledger_of("pools: [{name: private, guaranteed: {cpu: 8}}, {name: busy, guaranteed: {cpu: 2}}]")
    run(ledger, "b1", "busy", cpu=2000)
    decision = decide(ledger, ask("busy", cpu=1000), now=0)
    assert isinstance(decision, Wait)
    assert "has 0 of 2 guaranteed free, nothing borrowable" in decision.reason
    assert ledger.room(ledger.row["busy"], ledger.column[CPU]) == 0
    # and the idle private guarantee is still there for its owner
    assert isinstance(decide(ledger, ask("private", cpu=8000), now=0), Admit)


def test_private_reserve_of_a_child_under_a_lending_parent_is_not_lent():
    """The parent says it lends all; its child keeps its own guarantee private; the child wins."""
    ledger = ledger_of("""
pools:
- name: ai
  guaranteed: {cpu: 10}
  shareable: {cpu: 10}
  pools: [{name: nlp, guaranteed: {cpu: 10}}]
- {name: other, guaranteed: {cpu: 10}}
""")
    decision = decide(ledger, ask("other", cpu=11_000), now=0)
    assert isinstance(decision, Wait)
    assert "nothing borrowable" in decision.reason


# Reclaim ---------------------------------------------------------------------------------------
# owner lends its whole guarantee of 8 GPUs while idle; x and y have no guarantee and borrow.
LENDING = """
reclaim: {min_loan: 10m}
pools:
- {name: owner, guaranteed: {nvidia.com/gpu: 8}, shareable: {nvidia.com/gpu: 8}}
- {name: x}
- {name: y}
- {name: steady, guaranteed: {nvidia.com/gpu: 2}}
"""


def lending(*workloads: tuple[str, str, float, int, float]) -> Ledger:
    ledger = ledger_of(LENDING)
    for key, pool, gpus, priority, at in workloads:
        run(ledger, key, pool, gpus, priority=priority, at=at)
    return ledger


def reclaim(ledger: Ledger, gpus: float, now: float = 10_000.0, **kwargs) -> Reclaim | Wait:
    before = state(ledger)
    decision = decide(ledger, ask("owner", gpus), now=now, **kwargs)
    assert_unchanged(ledger, before)
    assert isinstance(decision, Reclaim | Wait), decision
    return decision


def victims(decision) -> list[str]:
    return [v.key for v in decision.victims] if isinstance(decision, Reclaim) else []


def test_reclaim_takes_the_lowest_priority_then_the_newest_borrower():
    ledger = lending(("old-low", "x", 2, 0, 0), ("new-low", "y", 2, 0, 100), ("high", "x", 4, 5, 0),
                     ("steady1", "steady", 2, -10, 200))
    decision = reclaim(ledger, 2)
    assert victims(decision) == ["new-low"]
    assert decision.gpu_model is None
    assert decision.reason == "project owner: reclaims lent capacity from new-low (y)"
    assert victims(reclaim(ledger, 4)) == ["new-low", "old-low"]


def test_reclaim_takes_mature_loans_before_young_ones():
    # young is the cheapest (lowest priority) but was admitted 5 minutes ago, under min_loan
    ledger = lending(("mature", "x", 4, 3, 0), ("young", "y", 4, 0, 9_700))
    assert victims(reclaim(ledger, 2)) == ["mature"]
    # a young loan still goes when mature ones cannot free enough
    assert sorted(victims(reclaim(ledger, 8))) == ["mature", "young"]
    # min_loan_s given by the caller overrides the configuration
    assert victims(reclaim(ledger, 2, min_loan_s=60)) == ["young"]


def test_reclaim_never_takes_work_within_its_own_guarantee():
    ledger = lending(("steady1", "steady", 2, -100, 9_999), ("x1", "x", 6, 100, 0))
    decision = reclaim(ledger, 8)
    assert victims(decision) == ["x1"]  # steady's lower priority and younger work is not a loan


def test_reclaim_spares_victims_that_turn_out_unnecessary():
    # four cheap 1-GPU borrowers come first in order, but 3 do not free enough; the 4-GPU one does alone
    ledger = lending(("a1", "x", 1, 0, 1), ("a2", "x", 1, 0, 2), ("a3", "y", 1, 0, 3), ("big", "y", 4, 1, 0),
                     ("keep", "x", 1, 9, 0))
    assert victims(reclaim(ledger, 4)) == ["big"]


def test_reclaim_evicts_whole_workloads():
    ledger = lending(("gang", "x", 8, 0, 0))
    decision = reclaim(ledger, 0.25)
    assert decision.victims == (Workload("gang", "x", Resources({GPU: 8000}), 0, 0.0),)


def test_reclaim_respects_usable():
    ledger = lending(("w1", "x", 2, 1, 0), ("w2", "x", 2, 0, 10), ("w3", "y", 2, 0, 20))
    seen = []

    def only_with_w1(candidate):  # say only w1's node can host the request
        seen.append([v.key for v in candidate])
        return any(v.key == "w1" for v in candidate)

    assert victims(reclaim(ledger, 4, usable=only_with_w1)) == ["w1"]
    assert seen[:3] == [["w3"], ["w3", "w2"], ["w3", "w2", "w1"]]
    decision = reclaim(ledger, 4, usable=lambda candidate: False)
    assert isinstance(decision, Wait)


def test_no_reclaim_beyond_the_guarantee():
    ledger = lending(("x1", "x", 8, 0, 0))
    decision = decide(ledger, ask("owner", 9), now=10_000)
    assert isinstance(decision, Wait)
    assert "has 8 of 8 guaranteed free" in decision.reason


def test_reclaim_within_an_ancestors_guarantee_spares_borrowers_inside_the_subtree():
    ledger = ledger_of("""
pools:
- name: team
  guaranteed: {cpu: 4}
  shareable: {cpu: 4}
  pools: [{name: a}, {name: b}]
- {name: other}
""")
    run(ledger, "b1", "b", cpu=2000, priority=-5, at=0)  # borrows above b's zero guarantee, inside team
    run(ledger, "o1", "other", cpu=1000, at=0)
    run(ledger, "o2", "other", cpu=1000, priority=1, at=0)
    decision = decide(ledger, ask("a", cpu=1000), now=10_000)
    assert isinstance(decision, Reclaim)
    assert victims(decision) == ["o1"]


def test_plan_reclaim_returns_nothing_without_a_capacity_shortfall():
    ledger = lending(("x1", "x", 4, 0, 0))
    pool = ledger.row["owner"]
    vec = ledger.vector({GPU: 2000})
    assert plan_reclaim(ledger, pool, vec, now=10_000, min_loan_s=0) == ()  # it fits already
    vec = ledger.vector({GPU: 9000})
    assert plan_reclaim(ledger, pool, vec, now=10_000, min_loan_s=0) == ()  # beyond the guarantee


# Victims are borrowers only ------------------------------------------------------------------
# owner lends its 4 GPUs while idle; x has no guarantee and borrows; neighbour lends too, but
# works within its own guarantee: it holds no loan, so its work is never a reclaim's victim.
NEIGHBOURS = """
reclaim: {min_loan: 0s}
pools:
- {name: owner, guaranteed: {nvidia.com/gpu: 4}, shareable: {nvidia.com/gpu: 4}}
- {name: x}
- {name: neighbour, guaranteed: {nvidia.com/gpu: 4}, shareable: {nvidia.com/gpu: 4}}
"""


def test_reclaim_never_takes_a_neighbour_working_within_its_guarantee():
    ledger = ledger_of(NEIGHBOURS)
    run(ledger, "x1", "x", 2, priority=5, at=0)
    run(ledger, "nb1", "neighbour", 4, priority=0, at=100)  # the cheapest and newest: first if it were a loan
    # capacity 8; claims x 2 + neighbour 4 + owner's 4 = 10: 2 short, and only x1 is a loan
    decision = decide(ledger, ask("owner", 4), now=10_000)
    assert isinstance(decision, Reclaim)
    assert victims(decision) == ["x1"]


def test_owner_waits_rather_than_take_a_neighbours_work_when_borrowers_free_too_little():
    ledger = ledger_of(NEIGHBOURS, capacity={GPU: 6000})  # a node is down: 6 GPUs for 8 guaranteed
    run(ledger, "x1", "x", 2, priority=5, at=0)
    run(ledger, "nb1", "neighbour", 4, priority=0, at=100)
    # claims x 2 + neighbour 4 + owner's 4 = 10 on 6: 4 short; the only loan, x1, frees 2
    decision = decide(ledger, ask("owner", 4), now=10_000)
    assert isinstance(decision, Wait)


def test_reclaim_in_a_shared_parent_takes_only_the_sibling_that_borrows():
    ledger = ledger_of("""
reclaim: {min_loan: 0s}
pools:
- name: team
  pools:
  - {name: owner, guaranteed: {cpu: 4}, shareable: {cpu: 4}}
  - {name: borrower}
  - {name: neighbour, guaranteed: {cpu: 4}, shareable: {cpu: 4}}
""")
    run(ledger, "b1", "borrower", cpu=2000, priority=5, at=0)
    run(ledger, "nb1", "neighbour", cpu=3000, priority=0, at=100)
    run(ledger, "nb2", "neighbour", cpu=1000, priority=1, at=50)
    # team holds 8 cpu; claims borrower 2 + neighbour 4 + owner's 4 = 10: 2 short
    decision = decide(ledger, ask("owner", cpu=4000), now=10_000)
    assert isinstance(decision, Reclaim)
    assert victims(decision) == ["b1"]


def test_a_pool_back_within_its_guarantee_holds_no_more_loans():
    ledger = ledger_of("""
reclaim: {min_loan: 0s}
pools:
- {name: owner, guaranteed: {nvidia.com/gpu: 4}, shareable: {nvidia.com/gpu: 4}}
- {name: x, guaranteed: {nvidia.com/gpu: 2}, shareable: {nvidia.com/gpu: 2}}
- {name: y}
""")
    run(ledger, "x1", "x", 2, priority=0, at=100)
    run(ledger, "x2", "x", 2, priority=0, at=0)  # x holds 4 on a guarantee of 2: one 2-GPU loan
    run(ledger, "y1", "y", 2, priority=5, at=0)
    # capacity 6; claims 6 + owner's 4: 4 short. Order: x1, x2, y1. Once x1 goes, x is at its
    # guarantee and x2 is no loan any more: y1 goes next, and both are needed.
    decision = decide(ledger, ask("owner", 4), now=10_000)
    assert isinstance(decision, Reclaim)
    assert victims(decision) == ["x1", "y1"]


# Each row: two 2-GPU borrowers, "keep" and "take", beside a 4-GPU filler of priority 9 in y;
# the loans fill owner's 8 lent GPUs, and steady keeps its private 2, so the cluster's 10 are
# all claimed and owner asking 2 is 2 short: exactly one 2-GPU victim, the first in order.
@pytest.mark.parametrize("keep, take", [
    pytest.param(("x", 1, 0), ("x", 0, 0), id="same pool: lower priority first"),
    pytest.param(("x", 0, 0), ("x", 0, 100), id="same pool: newer first"),
    pytest.param(("x", 1, 100), ("x", 0, 0), id="same pool: priority before age"),
    pytest.param(("x", 1, 0), ("y", 0, 0), id="across pools: lower priority first"),
    pytest.param(("x", 0, 0), ("y", 0, 100), id="across pools: newer first"),
    pytest.param(("y", 1, 100), ("x", 0, 0), id="across pools: priority before age"),
    pytest.param(("x", 0, 9_700), ("y", 5, 0), id="mature loans before cheaper young ones"),
])
def test_reclaim_order_of_victims(keep, take):
    (keep_pool, keep_priority, keep_at), (take_pool, take_priority, take_at) = keep, take
    ledger = lending(("filler", "y", 4, 9, 0), ("keep", keep_pool, 2, keep_priority, keep_at),
                     ("take", take_pool, 2, take_priority, take_at))
    assert victims(reclaim(ledger, 2)) == ["take"]  # now 10_000, min_loan 10m: young after 9_400
    ledger = lending(("filler", "y", 4, 9, 0), ("take", take_pool, 2, take_priority, take_at),
                     ("keep", keep_pool, 2, keep_priority, keep_at))  # charged the other way round
    assert victims(reclaim(ledger, 2)) == ["take"]


@pytest.mark.parametrize("cheap_at, first", [
    (9_400.0, "cheap"),  # exactly min_loan (600s) old at 10_000: not younger, so a mature loan, the cheapest
    (9_400.5, "dear"),  # 599.5s old: younger, reclaimed only if the mature loans cannot free enough; dear can
])
def test_min_loan_boundary(cheap_at, first):
    ledger = lending(("filler", "y", 4, 9, 0), ("cheap", "x", 2, 0, cheap_at), ("dear", "y", 2, 5, 0))
    assert victims(reclaim(ledger, 2, now=10_000.0)) == [first]  # 2 short: one 2-GPU victim


# Fairness --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pools, capacity, usage, shares, fair_order", [
    pytest.param("""
pools:
- {name: a, weight: 1, guaranteed: {cpu: 1, nvidia.com/gpu: 1}}
- {name: b, weight: 4, guaranteed: {cpu: 1, nvidia.com/gpu: 1}}
""", {CPU: 10_000, GPU: 4000}, {"a": {CPU: 3000, GPU: 1000}, "b": {CPU: 2000, GPU: 2000}},
        # a: cpu 3/10 = 0.3, GPU 1/4 = 0.25 -> 0.3 (cpu) / weight 1 = 0.3
        # b: cpu 2/10 = 0.2, GPU 2/4 = 0.5  -> 0.5 (GPU) / weight 4 = 0.125: below a, though unweighted above
        {"a": 0.3, "b": 0.125}, ["b", "a"], id="two pools, cpu and GPU"),
    pytest.param("""
pools:
- name: ai
  weight: 1.5
  pools:
  - {name: nlp, weight: 2, guaranteed: {cpu: 1, memory: 1Gi, nvidia.com/gpu: 1}}
  - {name: vision, guaranteed: {cpu: 1, memory: 1Gi, nvidia.com/gpu: 1}}
- {name: speech, weight: 0.5, guaranteed: {cpu: 1, memory: 1Gi, nvidia.com/gpu: 1}}
""", {CPU: 16_000, MEMORY: 64 * GiB, GPU: 8000},
        {"nlp": {CPU: 4000, MEMORY: 8 * GiB, GPU: 4000}, "vision": {CPU: 8000, MEMORY: 16 * GiB, GPU: 1000},
         "speech": {CPU: 2000, MEMORY: 24 * GiB}},
        # nlp:    cpu 4/16 = 0.25, memory 8/64 = 0.125, GPU 4/8 = 0.5   -> 0.5 (GPU) / 2 = 0.25
        # vision: cpu 8/16 = 0.5,  memory 16/64 = 0.25, GPU 1/8 = 0.125 -> 0.5 (cpu) / 1 = 0.5
        # speech: cpu 2/16 = 0.125, memory 24/64 = 0.375, GPU 0         -> 0.375 (memory) / 0.5 = 0.75
        # ai (its subtree): cpu 12/16 = 0.75, memory 24/64 = 0.375, GPU 5/8 = 0.625 -> 0.75 / 1.5 = 0.5
        {"nlp": 0.25, "vision": 0.5, "speech": 0.75, "ai": 0.5}, ["nlp", "vision", "speech"], id="three pools and a parent, cpu, memory, GPU"),
])
def test_weighted_dominant_share(pools, capacity, usage, shares, fair_order):
    ledger = ledger_of(pools, capacity)
    for pool, charge in usage.items():
        ledger.add(Workload(f"{pool}-work", pool, Resources(charge)), force=True)
    assert {name: ledger.dominant_share(ledger.row[name]) for name in shares} == pytest.approx(shares)
    # the pool with the lowest weighted dominant share gets idle capacity first
    assert sorted(usage, key=lambda name: ledger.dominant_share(ledger.row[name])) == fair_order


# GPU models ------------------------------------------------------------------------------------
MODELS = """
pools:
- {name: nlp, guaranteed: {nvidia.com/gpu/A100: 4, nvidia.com/gpu/T4: 4}}
- {name: vision, guaranteed: {nvidia.com/gpu/A100: 4}, shareable: {nvidia.com/gpu/A100: 4}}
"""


@pytest.mark.parametrize("a100_used, t4_used, models, kind, model", [
    (0, 0, None, "admit", "A100"),  # the first governed model
    (4, 0, None, "admit", "T4"),  # A100 would borrow; T4 fits within the guarantee
    (4, 4, None, "borrow", "A100"),  # no model without borrowing: the first that borrows
    (0, 0, {"T4"}, "admit", "T4"),  # restricted to T4
    (4, 0, {"A100", "V100"}, "borrow", "A100"),  # restricted: T4 is not allowed, so borrow A100
])
def test_gpu_model_flavours_are_tried_in_turn(a100_used, t4_used, models, kind, model):
    ledger = ledger_of(MODELS)
    if a100_used:
        run(ledger, "a", "nlp", a100_used, model=A100)
    if t4_used:
        run(ledger, "t", "nlp", t4_used, model=T4)
    decision = decide(ledger, ask("nlp", 2, models=models), now=0)
    assert isinstance(decision, Admit)
    assert (decision.kind, decision.gpu_model) == (kind, model)
    assert decision.request.charged(model, 0).charge == Resources({GPU: 2000, f"{GPU}/{model}": 2000})


def test_a_model_the_pool_may_never_use_is_skipped_not_denied():
    ledger = ledger_of("""
pools:
- {name: nlp, guaranteed: {nvidia.com/gpu/T4: 4}, max: {nvidia.com/gpu/A100: 0}}
- {name: vision, guaranteed: {nvidia.com/gpu/A100: 4}}
""")
    decision = decide(ledger, ask("nlp", 1), now=0)
    assert isinstance(decision, Admit) and decision.gpu_model == "T4"
    denied = decide(ledger, ask("nlp", 1, models={"A100"}), now=0)
    assert isinstance(denied, Deny)
    assert denied.reason == "project nlp: needs 1 GPU (A100), more than the max of pool nlp (0 GPU (A100))"


def test_model_flavour_reclaims_when_no_model_fits():
    ledger = ledger_of(MODELS + "- {name: x}\n")
    run(ledger, "t", "nlp", 4, model=T4)
    run(ledger, "x1", "x", 4, model=A100, at=0)
    decision = decide(ledger, ask("vision", 2), now=10_000)
    assert isinstance(decision, Reclaim)
    assert (decision.gpu_model, victims(decision)) == ("A100", ["x1"])


# Pods and gangs --------------------------------------------------------------------------------
def test_pod_charge_counts_gpu_shares_in_milli_gpu(make_pod):
    whole = make_pod("w", cpu=2000, memory=4 * GiB, gpus=2)
    share = make_pod("s", cpu=500, memory=GiB, share=250)
    cpu_only = make_pod("c", cpu=100, memory=GiB)
    assert pod_charge(whole) == Resources({CPU: 2000, MEMORY: 4 * GiB, PODS: 1, GPU: 2000})
    assert pod_charge(share) == Resources({CPU: 500, MEMORY: GiB, PODS: 1, GPU: 250})
    assert pod_charge(cpu_only) == Resources({CPU: 100, MEMORY: GiB, PODS: 1})


def test_gang_request_sums_its_members(make_pod):
    gang = [make_pod("w0", cpu=4000, memory=8 * GiB, gpus=4, models="A100|T4", project="nlp", priority=3),
            make_pod("w1", cpu=4000, memory=8 * GiB, gpus=4, models="A100", project="nlp", priority=5),
            make_pod("ps", cpu=1000, memory=2 * GiB, project="nlp", priority=0)]
    request = request_for("gang", gang)
    assert request == Request("gang", "nlp", Resources({CPU: 9000, MEMORY: 18 * GiB, PODS: 3, GPU: 8000}), 5,
                              frozenset({"A100"}))
    ledger = ledger_of(MODELS)
    run(ledger, "a", "nlp", 4, model=A100)  # nlp's A100s are in use; vision's 4 are not enough for 8
    decision = decide(ledger, request, now=0)
    assert isinstance(decision, Wait)
    assert decision.reason.startswith("project nlp: needs 8 GPU (A100), has 0 of 4 guaranteed free, "
                                      "4 borrowable from vision")
    single = request_for("one", gang[:1])
    assert single.gpu_models == frozenset({"A100", "T4"}) and single.charge[GPU] == 4000
    assert decide(ledger, single, now=0).gpu_model == "T4"


def test_a_parent_whose_children_keep_their_guarantee_private_is_not_named_a_lender():
    ledger = ledger_of("""
pools:
- name: ai
  guaranteed: {cpu: 10}
  shareable: {cpu: 10}
  pools: [{name: nlp, guaranteed: {cpu: 10}}]
- {name: big, guaranteed: {cpu: 10}, shareable: {cpu: 10}}
- {name: me}
""")
    assert ledger.idle_lendable(ledger.row["ai"]).tolist() == [0]
    decision = decide(ledger, ask("me", cpu=5000), now=0)
    assert isinstance(decision, Admit)
    assert decision.lenders == (("big", Resources({CPU: 5000})),)
