"""The filter stage: which nodes can take a pod, and kube-scheduler-shaped reasons for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.model.cluster import Requirement, Taint, TaintEffect, Toleration
from scheduler.placement.decision import Placement, Unschedulable
from scheduler.placement.engine import Placer
from scheduler.placement.filters import GpuFit, GpuModel, NodeAffinity, ResourcesFit, TaintToleration, run_filters
from scheduler.placement.profile import build_profile

GiB = 2**30


def feasible(snap, pod, filters=None, among=None) -> list[str]:
    result = run_filters(snap, pod, among=among) if filters is None else run_filters(snap, pod, filters, among)
    return [snap.names[i] for i in result.feasible]


# GPU fit ------------------------------------------------------------------------------------


def test_share_needs_one_gpu_with_enough_free_not_a_sum_across_gpus(make_snapshot, make_pod):
    snap = make_snapshot(
        [dict(name="spread", gpus=4), dict(name="one", gpus=2)],
        # "spread": 4 x 200 free = 800 in all, but no single GPU has 300; "one": GPU0 has exactly 300.
        [*(dict(on="spread", share=800, at=(g,)) for g in range(4)), dict(on="one", share=700, at=(0,)),
         dict(on="one", gpus=1, at=(1,))],
    )
    pod = make_pod(share=300)
    assert feasible(snap, pod, (GpuFit(),)) == ["one"]
    result = run_filters(snap, pod)
    assert result.rejections.by_node() == {"spread": "no single GPU with 300m free"}
    assert snap.default_gpus(pod, 1) == (0,)


@pytest.mark.parametrize(
    "bound, fits",
    [
        pytest.param([], True, id="all-idle"),
        pytest.param([dict(gpus=4, at=(0, 1, 2, 3))], True, id="exactly-4-idle"),
        pytest.param([dict(gpus=5, at=(0, 1, 2, 3, 4))], False, id="3-idle"),
        # 100 milli on each of 5 GPUs: 900 free on every one, 7.5 GPUs free in sum, yet only 3 idle
        pytest.param([dict(share=100, at=(g,)) for g in range(5)], False, id="3-idle-5-shared"),
    ],
)
def test_whole_gpus_must_be_wholly_idle_on_one_node(make_snapshot, make_pod, bound, fits):
    snap = make_snapshot([dict(name="n8", gpus=8)], [{**b, "on": "n8"} for b in bound])
    assert feasible(snap, make_pod(gpus=4)) == (["n8"] if fits else [])


def test_a_whole_gpu_is_not_two_halves(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="halves", gpus=2)], [dict(on="halves", share=500, at=(g,)) for g in range(2)])
    result = run_filters(snap, make_pod(gpus=1))
    assert len(result.feasible) == 0
    assert result.rejections.summary() == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."


def test_four_gpu_pod_cannot_span_nodes(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="a", gpus=2), dict(name="b", gpus=2)])
    assert feasible(snap, make_pod(gpus=4)) == []
    assert feasible(snap, make_pod(gpus=2)) == ["a", "b"]


# Node selector and required node affinity ---------------------------------------------------

AFFINITY_NODES = [
    dict(name="n1", labels={"zone": "a", "rank": "5"}),
    dict(name="n2", labels={"zone": "b", "rank": "10"}),
    dict(name="n3"),
    dict(name="n4", labels={"zone": "c", "rank": "x"}),
]


def R(key, op, *values, field=False):
    return Requirement(key, op, tuple(values), field)


@pytest.mark.parametrize(
    "selector, affinity, expected",
    [
        pytest.param({"zone": "a"}, (), ["n1"], id="selector"),
        pytest.param({"zone": "a", "rank": "10"}, (), [], id="selector-all-keys"),
        pytest.param({}, ((R("zone", "In", "a", "c"),),), ["n1", "n4"], id="In"),
        pytest.param({}, ((R("zone", "In", "nowhere"),),), [], id="In-unknown-value"),
        pytest.param({}, ((R("zone", "NotIn", "a"),),), ["n2", "n3", "n4"], id="NotIn-matches-absent"),
        pytest.param({}, ((R("zone", "Exists"),),), ["n1", "n2", "n4"], id="Exists"),
        pytest.param({}, ((R("zone", "DoesNotExist"),),), ["n3"], id="DoesNotExist"),
        pytest.param({}, ((R("rank", "Gt", "5"),),), ["n2"], id="Gt-strict-numeric-only"),
        pytest.param({}, ((R("rank", "Lt", "10"),),), ["n1"], id="Lt-strict-numeric-only"),
        pytest.param({}, ((R("metadata.name", "In", "n2", "n3", "gone", field=True),),), ["n2", "n3"], id="field-In"),
        pytest.param({}, ((R("metadata.name", "NotIn", "n1", field=True),),), ["n2", "n3", "n4"], id="field-NotIn"),
        pytest.param({}, ((R("zone", "In", "a"),), (R("zone", "In", "b"),)), ["n1", "n2"], id="terms-ORed"),
        pytest.param({}, ((R("zone", "Exists"), R("rank", "Gt", "4")),), ["n1", "n2"], id="requirements-ANDed"),
        pytest.param({}, ((R("zone", "In", "a"), R("zone", "In", "b")),), [], id="ANDed-contradiction"),
        pytest.param({}, ((),), [], id="empty-term-matches-nothing"),
        pytest.param({}, ((), (R("zone", "In", "b"),)), ["n2"], id="empty-term-ORed"),
        pytest.param({"zone": "a"}, ((R("zone", "In", "a", "b"),),), ["n1"], id="selector-AND-affinity"),
        pytest.param({"zone": "b"}, ((R("zone", "In", "a"),),), [], id="selector-AND-affinity-disjoint"),
    ],
)
def test_node_affinity(make_snapshot, make_pod, selector, affinity, expected):
    snap = make_snapshot(AFFINITY_NODES)
    pod = make_pod(node_selector=selector, affinity=affinity)
    assert feasible(snap, pod, (NodeAffinity(),)) == expected
    counts = run_filters(snap, pod).rejections.counts()
    assert counts == ({"node(s) didn't match Pod's node affinity/selector": 4 - len(expected)} if len(expected) < 4 else {})


# Taints and tolerations ---------------------------------------------------------------------

NS = Taint("gpu", "true", TaintEffect.NO_SCHEDULE)
NE = Taint("dedicated", "infra", TaintEffect.NO_EXECUTE)
PREFER = Taint("spot", "yes", TaintEffect.PREFER_NO_SCHEDULE)
TAINT_NODES = [dict(name="clean"), dict(name="ns", taints=[NS]), dict(name="ne", taints=[NE]),
               dict(name="pref", taints=[PREFER])]


@pytest.mark.parametrize(
    "tolerations, expected",
    [
        pytest.param((), ["clean", "pref"], id="none-PreferNoSchedule-does-not-filter"),
        pytest.param((Toleration("gpu", "Equal", "true"),), ["clean", "ns", "pref"], id="Equal"),
        pytest.param((Toleration("gpu", "Equal", "false"),), ["clean", "pref"], id="Equal-wrong-value"),
        pytest.param((Toleration("gpu", "Equal", "true", TaintEffect.NO_SCHEDULE),), ["clean", "ns", "pref"],
                     id="Equal-same-effect"),
        pytest.param((Toleration("gpu", "Equal", "true", TaintEffect.NO_EXECUTE),), ["clean", "pref"],
                     id="Equal-other-effect"),
        pytest.param((Toleration("gpu", "Exists"),), ["clean", "ns", "pref"], id="Exists-any-value"),
        pytest.param((Toleration("other", "Exists"),), ["clean", "pref"], id="Exists-other-key"),
        pytest.param((Toleration("dedicated", "Equal", "infra", TaintEffect.NO_EXECUTE),), ["clean", "ne", "pref"],
                     id="NoExecute"),
        pytest.param((Toleration(operator="Exists"),), ["clean", "ns", "ne", "pref"], id="empty-key-Exists-all"),
        pytest.param((Toleration(operator="Exists", effect=TaintEffect.NO_EXECUTE),), ["clean", "ne", "pref"],
                     id="empty-key-Exists-one-effect"),
        pytest.param((Toleration("gpu", "Exists"), Toleration("dedicated", "Exists")), ["clean", "ns", "ne", "pref"],
                     id="several"),
    ],
)
def test_taints(make_snapshot, make_pod, tolerations, expected):
    snap = make_snapshot(TAINT_NODES)
    assert feasible(snap, make_pod(tolerations=tolerations), (TaintToleration(),)) == expected


def test_taint_reasons_name_only_a_nodes_first_untolerated_taint(make_snapshot, make_pod):
    snap = make_snapshot([*TAINT_NODES, dict(name="both", taints=[NS, NE, PREFER])])
    result = run_filters(snap, make_pod())
    assert result.rejections.by_node() == {
        "ns": "node(s) had untolerated taint {gpu: true}",
        "ne": "node(s) had untolerated taint {dedicated: infra}",
        "both": "node(s) had untolerated taint {dedicated: infra}",
    }
    assert result.rejections.summary(2) == (
        "2/5 nodes are available: 2 node(s) had untolerated taint {dedicated: infra}, "
        "1 node(s) had untolerated taint {gpu: true}."
    )


# GPU model, extended resources, cpu/memory/pods ---------------------------------------------


@pytest.mark.parametrize(
    "models, expected, reason",
    [
        pytest.param("A100", ["a100"], "GPU model not A100", id="one-model"),
        pytest.param("A100|H100", ["a100", "h100"], "GPU model not A100|H100", id="either-model"),
        pytest.param(None, ["a100", "h100", "v100", "unlabelled"], None, id="any-model"),
    ],
)
def test_gpu_model(make_snapshot, make_pod, models, expected, reason):
    snap = make_snapshot([dict(name="a100", gpus=8), dict(name="h100", gpus=8, model="H100"),
                          dict(name="v100", gpus=8, model="V100"), dict(name="unlabelled", gpus=8, model=None),
                          dict(name="cpu")])
    pod = make_pod(gpus=1, models=models)
    assert feasible(snap, pod, (GpuModel(),)) == [n for n in snap.names if n in expected or n == "cpu"]
    rejected = run_filters(snap, pod).rejections.by_node()
    assert rejected.pop("cpu") == "Insufficient nvidia.com/gpu"  # no GPUs at all: not a model question
    assert rejected == {n: reason for n in snap.names if n not in expected and n != "cpu"}


def test_unknown_extended_resource_is_insufficient_everywhere(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="a"), dict(name="b")])
    pod = make_pod(extra={"example.com/fpga": 1})
    result = run_filters(snap, pod, (ResourcesFit(),))
    assert len(result.feasible) == 0
    assert result.rejections.summary() == "0/2 nodes are available: 2 Insufficient example.com/fpga."


def test_extended_resource_offered_by_one_node(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="a"), dict(name="fpga", extra={"example.com/fpga": 2})])
    assert feasible(snap, make_pod(extra={"example.com/fpga": 2})) == ["fpga"]
    assert feasible(snap, make_pod(extra={"example.com/fpga": 3})) == []


def test_cpu_and_memory_each_counted_and_sorted_by_count(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="tiny", cpu=1000, memory=GiB), dict(name="small", cpu=1000, memory=64 * GiB),
                          dict(name="big")], [dict(on="big", cpu=31_000)])
    decision = Placer(build_profile()).decide(snap, make_pod(cpu=2000, memory=2 * GiB))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/3 nodes are available: 3 Insufficient cpu, 1 Insufficient memory."
    assert decision.rejections.by_node() == {"tiny": "Insufficient cpu, Insufficient memory",
                                             "small": "Insufficient cpu", "big": "Insufficient cpu"}


def test_pod_count_limit(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="full", pods=2), dict(name="room", pods=3)],
                         [dict(on="full"), dict(on="full"), dict(on="room"), dict(on="room")])
    assert feasible(snap, make_pod()) == ["room"]
    snap.assign(make_pod("third"), snap.index["room"])
    assert feasible(snap, make_pod()) == []


def test_pod_count_limit_reads_like_kube_scheduler(make_snapshot, make_pod):
    # kube-scheduler's NodeResourcesFit reports a full node as "Too many pods" (not "Insufficient pods").
    snap = make_snapshot([dict(name="full", pods=1)], [dict(on="full")])
    assert run_filters(snap, make_pod()).rejections.summary() == "0/1 nodes are available: 1 Too many pods."


def test_crafted_unschedulable_message(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="v100", gpus=8, model="V100"), dict(name="a100-small", gpus=2),
                          dict(name="cpu-only")])
    decision = Placer(build_profile()).decide(snap, make_pod(gpus=4, models="A100"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/3 nodes are available: 2 Insufficient nvidia.com/gpu, 1 GPU model not A100."
    assert str(decision) == f"default/p: {decision.message}"
    assert decision.rejections.by_node() == {
        "v100": "GPU model not A100",
        "a100-small": "Insufficient nvidia.com/gpu",
        "cpu-only": "Insufficient nvidia.com/gpu",
    }


def test_a_node_rejected_by_one_filter_is_not_judged_by_the_next(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="tainted-small", cpu=500, gpus=0, taints=[NS]), dict(name="ok")])
    result = run_filters(snap, make_pod(cpu=1000, gpus=1))
    assert result.rejections.by_node() == {
        "tainted-small": "node(s) had untolerated taint {gpu: true}",
        "ok": "Insufficient nvidia.com/gpu",
    }


# Restricting to a subset --------------------------------------------------------------------


def test_among_restricts_nodes_considered_and_reported(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="a", gpus=8), dict(name="b"), dict(name="c", gpus=8), dict(name="d", gpus=1)])
    pod = make_pod(gpus=2)
    result = run_filters(snap, pod, among=np.array([1, 2, 3]))
    assert [snap.names[i] for i in result.feasible] == ["c"]
    assert result.rejections.considered == 3
    assert result.rejections.by_node() == {"b": "Insufficient nvidia.com/gpu", "d": "Insufficient nvidia.com/gpu"}
    placer = Placer(build_profile())
    decision = placer.decide(snap, pod, among=np.array([2]))
    assert isinstance(decision, Placement) and decision.node == "c" and decision.feasible == 1
    none = placer.decide(snap, pod, among=np.array([1, 3]))
    assert isinstance(none, Unschedulable)
    assert none.message == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
