"""Properties of the quota ledger and its decisions over random pool trees and random histories.

A history is what a caller does: each request is decided and applied (Admit: charge it; Reclaim:
evict the victims, then charge it; Wait and Deny: nothing), and running workloads are released.
After every step the ledger must hold every limit, agree with a from-scratch recomputation, and
every decision must have been honest about the ledger it read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from quota.admission import Admit, Deny, Reclaim, Request, Wait, decide, plan_reclaim, with_model
from quota.config import (
    Pool,
    QuotaConfig,
    ReclaimSettings,
    children_by_parent,
    compile_document,
    config_from_yaml,
    config_to_yaml,
    guarantees,
    parse_document,
)
from quota.ledger import Ledger, Workload
from scheduler.model.resources import CPU, GPU, Resources, gpu_quota_resource

RESOURCES = [CPU, GPU, gpu_quota_resource("A100"), gpu_quota_resource("T4")]
MODELS = ["A100", "T4", "V100"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def quota_documents(draw) -> dict:
    """A pool tree of depth 1 to 3 that validation accepts: guarantees at most max (where given),
    children's guarantees within the parent's, shareable within the (derived) guarantee, public
    pools leaves without shareable. Amounts in whole cpus and GPUs."""
    resources = draw(st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=4, unique=True))
    depth = draw(st.integers(1, 3))
    names = (f"p{i}" for i in itertools.count())
    small = st.integers(0, 6)

    def maybe() -> bool:
        return draw(st.integers(0, 2)) > 0

    def pool(level: int) -> tuple[dict, dict[str, int]]:
        doc: dict = {"name": next(names)}
        built = [pool(level + 1) for _ in range(draw(st.integers(0, 3)) if level < depth else 0)]
        children_sum = {r: sum(eff.get(r, 0) for _, eff in built) for r in resources}
        public = not built and draw(st.integers(0, 4)) == 0
        guaranteed = {r: children_sum[r] + draw(small) for r in resources if maybe()}
        effective = {r: guaranteed.get(r, children_sum[r]) for r in resources}
        limits = {
            "guaranteed": guaranteed,
            "max": {r: guaranteed.get(r, 0) + draw(st.integers(0, 8)) for r in resources if not draw(st.integers(0, 2))},
            "shareable": {} if public else {r: draw(st.just(effective[r]) | st.integers(0, effective[r]))
                                            for r in resources if maybe()},
            "borrow_limit": {r: draw(small) for r in resources if not draw(st.integers(0, 3))},
        }
        doc |= {k: v for k, v in limits.items() if v} | ({"public": True} if public else {})
        if built:
            doc["pools"] = [d for d, _ in built]
        return doc, effective

    return {"reclaim": {"min_loan": draw(st.sampled_from(["0s", "5m", "10m"]))},
            "pools": [pool(1)[0] for _ in range(draw(st.integers(1, 4)))]}


def compiled(document: dict) -> QuotaConfig:
    return compile_document(parse_document(document))


@st.composite
def ledgers(draw) -> Ledger:
    config = compiled(draw(quota_documents()))
    ledger = Ledger(config)
    if draw(st.booleans()):  # a cluster larger than the top-level guarantees
        extra = {r: draw(st.integers(0, 4)) * 1000 for r in ledger.resources}
        ledger = Ledger(config, {r: int(ledger.guaranteed[0, ledger.column[r]]) + extra[r] for r in ledger.resources})
    return ledger


# A step: ("request", pool index, cpu in halves, GPUs in halves, priority, accepted models, seconds later)
#         ("owner", pool index, quarters of its free guarantee it asks for, priority, seconds later)
#         ("release", workload index, seconds later)
requests = st.tuples(st.just("request"), st.integers(0, 30), st.integers(0, 6), st.integers(0, 6), st.integers(0, 3),
                     st.none() | st.frozensets(st.sampled_from(MODELS), min_size=1), st.integers(0, 400))
owners = st.tuples(st.just("owner"), st.integers(0, 30), st.integers(1, 4), st.integers(0, 3), st.integers(0, 400))
greedy = st.tuples(st.just("greedy"), st.integers(0, 30), st.booleans(), st.integers(0, 3), st.integers(0, 400))
releases = st.tuples(st.just("release"), st.integers(0, 1000), st.integers(0, 400))
histories = st.lists(st.one_of(requests, owners, greedy, greedy, releases), min_size=1, max_size=40)


def greedy_request(ledger: Ledger, key: str, pools: list[int], step) -> Request:
    """A request for all the cpu, or all the GPUs, a pool could take now: borrowing whatever is idle."""
    _, p, cpu, priority, _ = step
    pool = pools[p % len(pools)]
    columns = [j for r, j in ledger.column.items() if (r == CPU) == cpu and (cpu or r.startswith(GPU))]
    amount = max((ledger.room(pool, j) for j in columns), default=0) or 500
    return Request(key, ledger.names[pool], Resources({CPU if cpu else GPU: amount}), priority)


def owner_request(ledger: Ledger, key: str, pools: list[int], step) -> Request:
    """A request from a pool that has idle guarantee (an owner coming back), for part of it: the
    case that reclaims when the idle guarantee was lent."""
    _, p, quarters, priority, _ = step
    free = np.maximum(ledger.guaranteed - ledger.usage, 0)
    owning = [i for i in pools if free[i].any()] or pools
    pool = owning[p % len(owning)]
    cpu = int(free[pool, ledger.column[CPU]]) if CPU in ledger.column else 0
    gpus = max((int(free[pool, j]) for r, j in ledger.column.items() if r.startswith(GPU)), default=0)
    return Request(key, ledger.names[pool], Resources({CPU: cpu * quarters // 4, GPU: gpus * quarters // 4}), priority)


# Independent checks -----------------------------------------------------------------------------
def snapshot(ledger: Ledger):
    return (tuple(a.copy() for a in (ledger.usage, ledger.own, ledger.demand, ledger.claim)),
            {key: workload for key, (workload, _, _) in ledger.workloads.items()})


def assert_same(ledger: Ledger, before) -> None:
    arrays, workloads = snapshot(ledger)
    for a, b in zip(arrays, before[0]):
        np.testing.assert_array_equal(a, b)
    assert workloads == before[1]


def expected_arrays(ledger: Ledger) -> dict[str, np.ndarray]:
    """Usage, demand and claims from the configuration and the charged workloads alone."""
    config, n = ledger.config, len(ledger.names)
    by_name = {p.name: p for p in config.pools}
    guarantee = guarantees(children_by_parent(config.pools))
    reserved = np.zeros((n, len(ledger.resources)), dtype=np.int64)
    for p in config.pools:
        guaranteed = ledger.vector(guarantee(p))
        reserved[ledger.row[p.name]] = 0 if p.public else guaranteed - ledger.vector(p.shareable)
    own = np.zeros_like(reserved)
    for w in ledger.charged():
        own[ledger.row[w.pool]] += ledger.vector(w.charge)
    usage, demand, claim = own.copy(), own.copy(), np.zeros_like(own)
    for i in range(n - 1, -1, -1):
        claim[i] = np.maximum(demand[i], reserved[i]) if i else demand[i]
        if i:
            parent = ledger.row[by_name[ledger.names[i]].parent or "cluster"]
            usage[parent] += usage[i]
            demand[parent] += claim[i]
    return {"usage": usage, "own": own, "demand": demand, "claim": claim}


def assert_consistent(ledger: Ledger) -> None:
    # every limit holds on every governed resource
    for i in range(1, len(ledger.names)):
        assert (ledger.usage[i] <= ledger.max[i]).all(), ledger.names[i]
        assert (ledger.usage[i] <= ledger.guaranteed[i] + ledger.borrow_limit[i]).all(), ledger.names[i]
    assert (ledger.demand[0] <= ledger.guaranteed[0]).all()  # claims fit in the cluster
    # the incremental arrays are what a recomputation gives
    for name, array in expected_arrays(ledger).items():  # the root's claim is the capacity, not compared
        np.testing.assert_array_equal(getattr(ledger, name)[1:], array[1:], err_msg=name)
    np.testing.assert_array_equal(ledger.usage[0], expected_arrays(ledger)["usage"][0])
    fresh = Ledger(ledger.config, ledger.amounts(ledger.guaranteed[0]))
    for w in ledger.charged():
        fresh.add(w, force=True)
    for name in ("usage", "own", "demand", "claim"):
        np.testing.assert_array_equal(getattr(ledger, name), getattr(fresh, name), err_msg=name)


def candidate_vectors(ledger: Ledger, request: Request) -> list[np.ndarray]:
    governed = [r.removeprefix(GPU + "/") for r in ledger.resources if r.startswith(GPU + "/")]
    models = [m for m in governed if request.gpu_models is None or m in request.gpu_models] if request.charge[GPU] else []
    return [ledger.vector(with_model(request.charge, m)) for m in models or [None]]


def entitled_pool(ledger: Ledger, pool: int, vec: np.ndarray) -> int | None:
    """The closest pool whose guarantee holds the request on top of what its subtree holds and
    keeps reserved (its demand), recomputed here from scratch along the path."""
    used = vec > 0
    extra = vec
    for a in ledger.paths[pool][:-1]:
        if not (used & (ledger.demand[a] + extra > ledger.guaranteed[a])).any():
            return a
        extra = np.maximum(ledger.demand[a] + extra, ledger.reserved[a]) - ledger.claim[a]
    return None


def was_borrowing(ledger: Ledger, victim: Workload, entitled: int, vec: np.ndarray) -> bool:
    for a in ledger.paths[ledger.row[victim.pool]]:
        if a in ledger.paths[entitled]:
            return False
        if ((vec > 0) & (ledger.usage[a] > ledger.guaranteed[a])).any():
            return True
    return False


def check_reclaim(ledger: Ledger, pool: int, vec: np.ndarray, victims: tuple[Workload, ...]) -> None:
    """Victims are whole charged workloads, outside the entitled subtree, borrowing; the request
    fits once they leave, and not if any one of them stays."""
    assert victims and len({v.key for v in victims}) == len(victims)
    assert ledger.violation(pool, vec).limit == "capacity"
    entitled = entitled_pool(ledger, pool, vec)
    assert entitled is not None, "only a request within a guarantee reclaims"
    for v in victims:
        assert ledger.workloads[v.key][0] == v
        assert not ledger.in_subtree(ledger.row[v.pool], entitled)
        assert not ledger.in_subtree(ledger.row[v.pool], ledger.entitled(pool, vec))
        assert was_borrowing(ledger, v, entitled, vec)
    before = snapshot(ledger)
    for v in victims:
        ledger.remove(v.key)
    assert ledger.fits(pool, vec)
    for v in victims:  # minimal: each victim is needed
        ledger.add(v, force=True)
        assert not ledger.fits(pool, vec), f"{v.key} need not have been evicted"
        ledger.remove(v.key)
    for v in victims:
        ledger.add(v, force=True)
    assert_same(ledger, before)


# Properties ------------------------------------------------------------------------------------
@SETTINGS
@given(ledger=ledgers(), history=histories)
def test_histories_keep_every_limit_and_every_decision_honest(ledger, history):
    assert_consistent(ledger)
    pools = [name for name in ledger.names[1:]] + ["nope"]
    owners = [i for i in range(1, len(ledger.names)) if not ledger.public[i]] or [1]
    now = 0.0
    for n, step in enumerate(history):
        now += step[-1]
        if step[0] == "release":
            if ledger.workloads:
                keys = sorted(ledger.workloads)
                ledger.remove(keys[step[1] % len(keys)])
            assert_consistent(ledger)
            continue
        if step[0] == "owner":
            request = owner_request(ledger, f"w{n}", owners, step)
        elif step[0] == "greedy":
            request = greedy_request(ledger, f"w{n}", owners, step)
        else:
            _, p, cpu, gpus, priority, models, _ = step
            request = Request(f"w{n}", pools[p % len(pools)], Resources({CPU: cpu * 500, GPU: gpus * 500}),
                              priority, models)
        before = snapshot(ledger)
        decision = decide(ledger, request, now)
        assert_same(ledger, before)
        assert decision.request == request and decision.reason
        event(decision.kind)
        if isinstance(decision, Deny):
            assert request.pool not in ledger.row or ledger.public[ledger.row[request.pool]] or all(
                any((v > ledger.max[a]).any() or (v > ledger.guaranteed[a] + ledger.borrow_limit[a]).any()
                    for a in ledger.paths[ledger.row[request.pool]])
                for v in candidate_vectors(ledger, request))
            continue
        pool = ledger.row[request.pool]
        assert not ledger.public[pool]
        if isinstance(decision, Wait):
            assert not any(ledger.fits(pool, v) for v in candidate_vectors(ledger, request))
            continue
        workload = request.charged(decision.gpu_model, now)
        vec = ledger.vector(workload.charge)
        if isinstance(decision, Admit):
            assert ledger.fits(pool, vec)
            own_free = np.maximum(ledger.guaranteed[pool] - ledger.usage[pool], 0)
            assert decision.borrowed == ledger.amounts(np.maximum(vec - own_free, 0))
            assert (decision.kind == "borrow") == bool(decision.borrowed)
            lent = sum((ledger.vector(amounts) for _, amounts in decision.lenders), np.zeros_like(vec))
            assert (lent <= ledger.vector(decision.borrowed)).all()
            assert all(name != request.pool for name, _ in decision.lenders)
        else:
            assert isinstance(decision, Reclaim)
            check_reclaim(ledger, pool, vec, decision.victims)
            for v in decision.victims:
                ledger.remove(v.key)
        ledger.add(workload)  # refuses (raises) anything that breaks a limit
        assert_consistent(ledger)


fills = st.lists(requests, min_size=1, max_size=40)


def fill(ledger: Ledger, steps) -> float:
    """Charge what fits of ``steps`` (cpu, GPUs on one governed model), each at its time; returns the time."""
    pools = [i for i in range(1, len(ledger.names)) if not ledger.public[i]]
    models = [r for r in ledger.resources if r.startswith(GPU + "/")] or [GPU]
    now = 0.0
    for _, p, cpu, gpus, priority, _, dt in steps:
        now += dt
        pool = pools[p % len(pools)]
        charge = Resources({CPU: cpu * 500, GPU: gpus * 500, models[(p + cpu) % len(models)]: gpus * 500})
        workload = Workload(f"w{len(ledger.workloads)}", ledger.names[pool], charge, priority, now)
        if ledger.fits(pool, ledger.vector(charge)):
            ledger.add(workload)
    return now


@SETTINGS
@given(ledger=ledgers(), steps=fills, data=st.data())
def test_plan_reclaim_is_speculative_and_its_victims_are_needed_borrowers(ledger, steps, data):
    pools = [i for i in range(1, len(ledger.names)) if not ledger.public[i]]
    if not pools:
        return
    now = fill(ledger, steps)
    lending = [i for i in pools if ledger.idle_lendable(i).any()]
    if lending and data.draw(st.integers(0, 3)):  # others borrow what a pool lends, then it asks for it back
        pool = data.draw(st.sampled_from(lending))
        lent = ledger.idle_lendable(pool)
        for q in (q for q in pools if not ledger.in_subtree(q, pool) and not ledger.in_subtree(pool, q)):
            for j in np.flatnonzero(lent):  # q takes all it can of each lent resource, in pieces
                room, pieces = ledger.room(q, j), data.draw(st.integers(1, 3))
                for k in range(pieces):
                    vec = np.zeros_like(lent)
                    vec[j] = room // pieces + (room % pieces if k == pieces - 1 else 0)
                    if not vec.any():
                        continue
                    now += data.draw(st.integers(0, 400))
                    ledger.add(Workload(f"b{len(ledger.workloads)}", ledger.names[q], ledger.amounts(vec),
                                        data.draw(st.integers(0, 3)), now))
        vec = lent * data.draw(st.integers(1, 4)) // 4
    else:
        pool = data.draw(st.sampled_from(pools))
        vec = ledger.vector({r: data.draw(st.integers(0, 8)) * 500 for r in ledger.resources})
    before = snapshot(ledger)
    victims = plan_reclaim(ledger, pool, vec, now, min_loan_s=data.draw(st.sampled_from([0.0, 600.0])))
    assert_same(ledger, before)
    event(f"{len(victims)} victims" if len(victims) < 3 else "3+ victims")
    if victims:
        check_reclaim(ledger, pool, vec, victims)
    assert_consistent(ledger)


@settings(max_examples=100, deadline=None)
@given(document=quota_documents())
def test_generated_configurations_round_trip_through_yaml(document):
    config = compiled(document)
    text = config_to_yaml(config)
    assert config_from_yaml(text) == config
    assert config_to_yaml(config_from_yaml(text)) == text


@SETTINGS
@given(ledger=ledgers(), steps=fills)
def test_a_copy_has_the_same_charges_and_changes_apart_from_its_original(ledger, steps):
    if ledger.public[1:].all():
        return  # nothing to charge
    fill(ledger, steps)
    before = snapshot(ledger)
    copied = ledger.copy()
    assert_same(copied, before)
    taken = [copied.remove(key) for key in sorted(copied.workloads)[::2]]
    copied.terminating.add("elsewhere")
    assert_consistent(copied)
    assert_same(ledger, before)  # the original saw none of it
    assert "elsewhere" not in ledger.terminating
    for workload in reversed(taken):
        copied.add(workload)
    assert_same(copied, before)


# Victims are borrowers only: a targeted neighbourhood ------------------------------------------
@dataclass(frozen=True)
class Neighbourhood:
    """A lender, a borrower holding ``loan`` of the lender's idle guarantee, and a neighbour
    working within its whole, shareable guarantee, in one of three layouts: all top-level
    ("flat"), all children of one parent ("siblings"), or lender and neighbour under a parent and
    the borrower outside it ("apart"). Amounts in whole units of ``resource``."""

    layout: str
    resource: str
    lender: int  # its guarantee, all shareable, all idle and lent
    loan: int  # 1..lender: what the borrower takes above its own guarantee
    borrower: int  # its guarantee, all used
    neighbour: tuple[int, ...]  # its workloads; their sum is its guarantee
    short: int  # 1..min(loan, neighbour's guarantee): how far the lender's request is from fitting
    pieces: tuple[tuple[int, int, int], ...]  # the borrower's workloads: (units, priority 1..3, time)
    min_loan_s: float

    def config(self) -> QuotaConfig:
        r = self.resource
        parent = {"flat": (None, None, None), "siblings": ("team", "team", "team"), "apart": ("team", None, "team")}
        lender_parent, borrower_parent, neighbour_parent = parent[self.layout]
        lent = {r: 1000 * (self.lender + sum(self.neighbour))}  # what team lends outside itself, when apart
        pools = [Pool("team", shareable=lent)] if self.layout != "flat" else []
        pools += [Pool("lender", lender_parent, guaranteed={r: 1000 * self.lender}, shareable={r: 1000 * self.lender}),
                  Pool("borrower", borrower_parent, guaranteed={r: 1000 * self.borrower}),
                  Pool("neighbour", neighbour_parent, guaranteed={r: 1000 * sum(self.neighbour)},
                       shareable={r: 1000 * sum(self.neighbour)})]
        return QuotaConfig(tuple(pools), ReclaimSettings(min_loan_s=self.min_loan_s))


@st.composite
def neighbourhoods(draw) -> Neighbourhood:
    lender = draw(st.integers(1, 6))
    loan = draw(st.integers(1, lender))
    neighbour = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    borrower = draw(st.integers(0, 3))
    units = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    units[-1] += max(borrower + loan - sum(units), 0)  # the pieces hold borrower + loan exactly
    while sum(units) > borrower + loan:
        units[units.index(max(units))] -= 1
    pieces = tuple((u, draw(st.integers(1, 3)), draw(st.integers(0, 100))) for u in units if u)
    return Neighbourhood(draw(st.sampled_from(["flat", "siblings", "apart"])), draw(st.sampled_from([CPU, GPU])),
                         lender, loan, borrower, neighbour, draw(st.integers(1, min(loan, sum(neighbour)))), pieces,
                         draw(st.sampled_from([0.0, 600.0])))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(neighbourhoods())
@example(Neighbourhood("siblings", GPU, lender=4, loan=2, borrower=0, neighbour=(4,), short=2,
                       pieces=((2, 1, 0),), min_loan_s=0.0))
@example(Neighbourhood("apart", CPU, lender=3, loan=3, borrower=1, neighbour=(1, 2), short=3,
                       pieces=((2, 3, 50), (2, 1, 0)), min_loan_s=600.0))
def test_reclaim_takes_only_borrowers_never_the_cheaper_neighbour(hood):
    """The neighbour's work is the cheapest to evict (priority 0, the newest, mature) and would
    free enough on its own; the reclaim must take the borrower's work all the same."""
    ledger = Ledger(hood.config())
    now = 1000.0  # every workload is older than min_loan
    for k, (units, priority, at) in enumerate(hood.pieces):
        ledger.add(Workload(f"b{k}", "borrower", Resources({hood.resource: 1000 * units}), priority, float(at)))
    for k, units in enumerate(hood.neighbour):
        ledger.add(Workload(f"n{k}", "neighbour", Resources({hood.resource: 1000 * units}), 0, 200.0))
    # capacity lender + borrower + neighbour; claims borrower + loan + neighbour: lender - loan idle,
    # so asking lender - loan + short is short by ``short``, which the neighbour alone could free
    request = Request("back", "lender", Resources({hood.resource: 1000 * (hood.lender - hood.loan + hood.short)}))
    before = snapshot(ledger)
    decision = decide(ledger, request, now)
    assert_same(ledger, before)
    assert isinstance(decision, Reclaim), decision
    assert {v.pool for v in decision.victims} == {"borrower"}, [v.key for v in decision.victims]
    check_reclaim(ledger, ledger.row["lender"], ledger.vector(request.charge), decision.victims)
