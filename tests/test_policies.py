"""Placement policies on small hand-made clusters: one cluster per row, the chosen node and GPUs.

Every scenario also checks that the winner wins outright (no tie settled by node order), so a row
cannot pass by accident of the order its nodes are listed in.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scheduler.model.resources import MILLI_PER_GPU
from scheduler.placement.decision import Placement
from scheduler.placement.engine import Placer
from scheduler.placement.filters import run_filters
from scheduler.placement.profile import build_profile
from scheduler.placement.scoring import PolicyContext, available, make
from scheduler.placement.workload import TargetWorkload

GiB = 2**30
FLUID = "fluid.io/s-{}-{}"

# Target workloads for fgd, as pod keywords (see conftest.build_pod).
ONE_GPU = [dict(gpus=1)]  # every expected pod takes one whole GPU, 1 core
HALF_GPU = [dict(share=500)]
ONE_GPU_2_CORES = [dict(gpus=1, cpu=2000)]


def row(id, profile, nodes, pod, node, gpus=(), *, bound=(), workload=ONE_GPU, among=None):
    return pytest.param(profile, nodes, list(bound), pod, node, tuple(gpus), workload, among, id=id)


# Nodes for the gpu-packing rows: GPU free shares in brackets.
PACKING_NODES = [
    dict(name="idle8", gpus=8),  # idle node, 8 GPUs
    dict(name="idle2", gpus=2),  # idle node, 2 GPUs
    dict(name="used", gpus=4),  # [0, 1000, 1000, 1000]
    dict(name="shared", gpus=4),  # [600, 300, 0, 0]
    dict(name="half", gpus=2),  # [600, 0]
]
PACKING_BOUND = [
    dict(on="used", gpus=1, at=(0,)),
    dict(on="shared", share=400, at=(0,)), dict(on="shared", share=700, at=(1,)), dict(on="shared", gpus=2, at=(2, 3)),
    dict(on="half", share=400, at=(0,)), dict(on="half", gpus=1, at=(1,)),
]

# Nodes for the gpu-clustering rows, by the classes of their GPU pods (every share is one class,
# whole-GPU pods one per GPU count): one 1-GPU pod; none; a 1-GPU pod and a share; a share.
CLUSTERING_NODES = [dict(name=n, gpus=4) for n in ("other", "idle", "mixed", "same")]
CLUSTERING_BOUND = [
    dict(on="other", gpus=1, at=(0,)),
    dict(on="mixed", gpus=1, at=(0,)), dict(on="mixed", share=500, at=(1,)),
    dict(on="same", share=500, at=(0,)),
]

SCENARIOS = [
    # gpu-pack: fewest GPUs and nodes touched --------------------------------------------
    # empty: 40 (whole GPUs count as "on a used GPU") + 40*(1-7/8) = 45; used: 40 + 40*(1-6/8) + 20 = 70
    row("gpu-pack/whole-GPU-fills-used-node", "gpu-pack", [dict(name="empty", gpus=8), dict(name="used", gpus=8)],
        dict(gpus=1), "used", (1,), bound=[dict(on="used", gpus=1, at=(0,))]),
    row("gpu-pack/share-onto-used-GPU", "gpu-pack", [dict(name="empty", gpus=8), dict(name="used", gpus=8)],
        dict(share=300), "used", (3,), bound=[dict(on="used", share=500, at=(3,))]),
    # best fit across the cluster: big 40 + 40*(1/8) = 45, small 40 + 40*(5/8) = 65
    row("gpu-pack/least-idle-left", "gpu-pack", [dict(name="big", gpus=8), dict(name="small", gpus=4)],
        dict(gpus=1), "small", (0,)),
    row("gpu-pack/cpu-pod-off-idle-GPUs", "gpu-pack", [dict(name="gpu", gpus=8), dict(name="cpu")],
        dict(), "cpu"),
    row("gpu-pack/cpu-pod-onto-busy-node", "gpu-pack", [dict(name="busy"), dict(name="idle")],
        dict(), "busy", bound=[dict(on="busy", cpu=8000)]),
    # cpu-spread: the opposite ------------------------------------------------------------
    row("cpu-spread/least-loaded", "cpu-spread", [dict(name="busy"), dict(name="idle")],
        dict(), "idle", bound=[dict(on="busy", cpu=8000)]),
    # the GPU host is emptier, but its idle GPUs need its cpu: 0.5*0.98 + 0 < 0.5*0.91 + 0.5
    row("cpu-spread/away-from-idle-GPUs", "cpu-spread", [dict(name="gpu", gpus=8), dict(name="cpu")],
        dict(), "cpu", bound=[dict(on="cpu", cpu=4000)]),
    # fgd, workload = one whole GPU (1 core) --------------------------------------------
    # F(n) = free milli on GPUs with < 1000 free when a whole GPU still fits on n, else all idle milli.
    #   two  [1000, 1000]            F = 0   -> share on either GPU [500, 1000]       F = 500  (+500)
    #   four [500, 1000, 1000, 1000] F = 500 -> share on GPU0 [0, 1000, 1000, 1000]  F = 0    (-500)
    # so fgd takes "four", GPU 0 (on GPU1, [500, 500, 1000, 1000] F = 1000); bestfit takes the
    # tighter node "two" (see the bestfit row below).
    row("fgd/share-where-fragments-shrink", "fgd", [dict(name="two", gpus=2), dict(name="four", gpus=4)],
        dict(share=500), "four", (0,), bound=[dict(on="four", share=500, at=(0,))]),
    # bestfit: cpu_left two 31/32, four 30/32; GPU left two 1500/4000, four 3000/4000
    #   two: 100*(1 - 0.5*31/32 - 0.5*0.375) = 32.8; four: 100*(1 - 0.5*30/32 - 0.5*0.75) = 15.6
    row("bestfit/same-cluster-tighter-node", "bestfit", [dict(name="two", gpus=2), dict(name="four", gpus=4)],
        dict(share=500), "two", (0,), bound=[dict(on="four", share=500, at=(0,))]),
    # workload = a 500-milli share. GPUs free [700, 1000], pod 300:
    #   GPU0 -> [400, 1000]: 400 < 500 is stranded, F = 400;  GPU1 -> [700, 700]: F = 0
    row("fgd/GPU-choice-differs-from-best-fit", "fgd", [dict(name="one", gpus=2)], dict(share=300), "one", (1,),
        bound=[dict(on="one", share=300, at=(0,))], workload=HALF_GPU),
    row("bestfit/best-fit-GPU", "bestfit", [dict(name="one", gpus=2)], dict(share=300), "one", (0,),
        bound=[dict(on="one", share=300, at=(0,))]),
    row("gpu-pack/best-fit-GPU", "gpu-pack", [dict(name="one", gpus=2)], dict(share=300), "one", (0,),
        bound=[dict(on="one", share=300, at=(0,))]),
    # workload = one GPU with 2 cores. A 3-core CPU pod on "g" leaves 1 core: no expected pod fits,
    # both idle GPUs become fragment (F 0 -> 2000); on "c" (no GPU) F stays 0.
    row("fgd/cpu-pod-keeps-GPU-host-usable", "fgd", [dict(name="g", cpu=4000, gpus=2), dict(name="c", cpu=4000)],
        dict(cpu=3000), "c", workload=ONE_GPU_2_CORES),
    # gpu-packing: used GPU > idle GPU of a used node > idle node ------------------------
    # share 200: idle8 max(33-8, 8)=25, idle2 31, used 50-1=49, shared 100-30//10=97, half 100-60//10=94
    row("gpu-packing/share-on-fullest-used-GPU", "gpu-packing", PACKING_NODES, dict(share=200), "shared", (1,),
        bound=PACKING_BOUND),
    row("gpu-packing/share-on-used-GPU-over-used-node", "gpu-packing", PACKING_NODES, dict(share=200), "half", (0,),
        bound=PACKING_BOUND, among=["idle8", "used", "half"]),
    row("gpu-packing/share-on-used-node-over-idle-node", "gpu-packing", PACKING_NODES, dict(share=200), "used", (1,),
        bound=PACKING_BOUND, among=["idle8", "idle2", "used"]),
    row("gpu-packing/whole-GPU-on-used-node", "gpu-packing", PACKING_NODES, dict(gpus=1), "used", (1,),
        bound=PACKING_BOUND),
    row("gpu-packing/idle-node-with-fewer-GPUs", "gpu-packing", PACKING_NODES, dict(gpus=1), "idle2", (0,),
        bound=PACKING_BOUND, among=["idle8", "idle2"]),
    # gpu-clustering bands: only this class > this class among others > idle > other classes only
    row("gpu-clustering/same-class-only", "gpu-clustering", CLUSTERING_NODES, dict(share=300), "same", (0,),
        bound=CLUSTERING_BOUND),
    row("gpu-clustering/whole-GPU-pods-gather-by-count", "gpu-clustering", CLUSTERING_NODES, dict(gpus=1), "other",
        (1,), bound=CLUSTERING_BOUND),
    row("gpu-clustering/same-class-among-others", "gpu-clustering", CLUSTERING_NODES, dict(share=300), "mixed", (1,),
        bound=CLUSTERING_BOUND, among=["other", "idle", "mixed"]),
    row("gpu-clustering/idle-over-other-classes", "gpu-clustering", CLUSTERING_NODES, dict(share=300), "idle", (0,),
        bound=CLUSTERING_BOUND, among=["other", "idle"]),
    # dotprod, pod 16 cores + 1 GPU on 32-core 8-GPU nodes:
    #   gpus-busy: (16/32)(32/32) + (1/8)(4/8) = 0.5625;  cpu-busy: (16/32)(16/32) + (1/8)(8/8) = 0.375
    row("dotprod/least-aligned-free-capacity", "dotprod", [dict(name="gpus-busy", gpus=8), dict(name="cpu-busy", gpus=8)],
        dict(cpu=16_000, gpus=1), "cpu-busy", (0,),
        bound=[dict(on="gpus-busy", cpu=0, gpus=4, at=(0, 1, 2, 3)), dict(on="cpu-busy", cpu=16_000)]),
    # pipeline-spread --------------------------------------------------------------------
    row("pipeline-spread/off-siblings", "pipeline-spread", [dict(name="sibling"), dict(name="busy")],
        dict(pipeline="p1"), "busy", bound=[dict(on="sibling", pipeline="p1"), dict(on="busy", cpu=16_000)]),
    row("pipeline-spread/fewer-siblings", "pipeline-spread", [dict(name="two"), dict(name="one")],
        dict(pipeline="p1"), "one",
        bound=[dict(on="two", pipeline="p1"), dict(on="two", pipeline="p1"), dict(on="one", pipeline="p1", cpu=16_000)]),
    row("pipeline-spread/other-pipeline-is-no-sibling", "pipeline-spread", [dict(name="busy"), dict(name="other")],
        dict(pipeline="p1"), "other", bound=[dict(on="busy", cpu=8000), dict(on="other", pipeline="p2")]),
    # data-locality ----------------------------------------------------------------------
    row("data-locality/cached-node", "data-locality",
        [dict(name="plain"), dict(name="other-ns", labels={FLUID.format("default", "imagenet"): "true"}),
         dict(name="cached", labels={FLUID.format("ml", "imagenet"): "true"})],
        dict(namespace="ml", datasets=("imagenet",)), "cached"),
    row("data-locality/more-datasets-cached", "data-locality",
        [dict(name="one", labels={FLUID.format("ml", "a"): "true"}),
         dict(name="both", labels={FLUID.format("ml", "a"): "true", FLUID.format("ml", "b"): "true"})],
        dict(namespace="ml", datasets=("a", "b")), "both"),
    # default profile: fgd for GPU pods (the workload known), cpu-spread for CPU pods --------
    # A 300 share on the used GPU would leave 300, too little for the 600 shares expected: gpu-pack
    # would take it there, fgd takes an idle GPU.
    row("default/GPU-pod-by-fragmentation", "default", [dict(name="used", gpus=1), dict(name="idle", gpus=1)],
        dict(share=300), "idle", (0,), bound=[dict(on="used", share=400, at=(0,))], workload=[dict(share=600)]),
    row("default/CPU-pod-spreads", "default", [dict(name="busy"), dict(name="idle")],
        dict(), "idle", bound=[dict(on="busy", cpu=8000)]),
]


def workload_of(make_pod, pods) -> TargetWorkload:
    return TargetWorkload.from_pods(make_pod(f"w{i}", **p) for i, p in enumerate(pods))


@pytest.mark.parametrize("profile, nodes, bound, pod, node, gpus, workload, among", SCENARIOS)
def test_scenario(make_snapshot, make_pod, profile, nodes, bound, pod, node, gpus, workload, among):
    snap = make_snapshot(nodes, bound)
    placer = Placer(build_profile(profile, workload=workload_of(make_pod, workload)))
    new = make_pod("new", **pod)
    subset = None if among is None else np.array([snap.index[n] for n in among])
    decision = placer.decide(snap, new, subset)
    assert isinstance(decision, Placement), decision
    assert (decision.node, decision.gpus) == (node, gpus)
    feasible = run_filters(snap, new, among=subset).feasible
    assert decision.feasible == len(feasible)
    total, _ = placer.score(snap, new, feasible)
    assert np.count_nonzero(total == total.max()) == 1, f"tie: {dict(zip((snap.names[i] for i in feasible), total))}"
    if profile != "default":
        assert [name for name, _ in decision.scores] == [profile]
    snap.assign(new, decision.node_index, decision.gpus)  # the decision is one the snapshot accepts


def test_fgd_cpu_counts_the_idle_gpu_that_free_cpu_cannot_feed(make_snapshot, make_pod):
    # Expected GPU pods: 1 GPU and 8 cores each, so a core feeds 1/8 of a GPU. "rich" has 4 idle
    # GPUs and 40 cores; "busy" has no idle GPU. A 16-core CPU pod on "rich" leaves 24 cores, which
    # feed 3 GPUs: the 4th is stranded. fgd sees nothing (one expected pod still fits) and takes
    # the first node; fgd-cpu counts that GPU and goes to "busy".
    nodes = [dict(name="rich", cpu=40_000, gpus=4), dict(name="busy", cpu=40_000, gpus=4)]
    snap = make_snapshot(nodes, [dict(on="busy", gpus=4, at=(0, 1, 2, 3))])
    workload = workload_of(make_pod, [dict(cpu=8000, gpus=1)])
    pod = make_pod("cpu-heavy", cpu=16_000)
    assert Placer(build_profile("fgd", workload=workload)).decide(snap, pod).node == "rich"
    fgd_cpu = make("fgd-cpu", PolicyContext(np.random.default_rng(0), workload))
    assert Placer(build_profile("fgd-cpu", workload=workload)).decide(snap, pod).node == "busy"
    snap.assign(pod, snap.index["rich"])
    # rich: 4 idle GPUs, 24 cores feed 3, one (1000 milli) is stranded; busy: no idle GPU
    assert fgd_cpu.node_fragmentation(snap).tolist() == [1000, 0]


def test_default_packs_gpu_pods_until_it_knows_the_workload(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="empty", gpus=8), dict(name="used", gpus=8)], [dict(on="used", gpus=1, at=(0,))])
    decision = Placer(build_profile("default")).decide(snap, make_pod(gpus=1))
    assert (decision.node, [name for name, _ in decision.scores]) == ("used", ["gpu-pack"])


# Exact formulas ------------------------------------------------------------------------------


def test_bestfit_formula(make_snapshot, make_pod):
    # The paper's normalisation: 128 cores and 8 GPUs, the largest node here.
    snap = make_snapshot([dict(name="big", cpu=128_000, gpus=8), dict(name="small", cpu=64_000, gpus=4)])
    decision = Placer(build_profile("bestfit")).decide(snap, make_pod(cpu=4000, gpus=1))
    # big:   1 - 0.5*124/128 - 0.5*7/8 = 0.078125;  small: 1 - 0.5*60/128 - 0.5*3/8 = 0.578125
    # The engine uses whole-number scores, as kube-scheduler's score plugins return them.
    assert (decision.node, decision.scores) == ("small", (("bestfit", 57.0),))
    scores = make("bestfit", PolicyContext(np.random.default_rng(0))).score(snap, make_pod(cpu=4000, gpus=1),
                                                                             np.arange(2))
    assert scores.tolist() == [7.8125, 57.8125]


def test_dotprod_formula(make_snapshot, make_pod):
    # Both dimensions are normalised by the largest node (32 cores, 8 GPUs), as the paper's -norm
    # max does: the small idle node's dot is 16/32 * 16/32 + 1/8 * 4/8, not 16/16 * 16/16 + 1/4 * 4/4.
    snap = make_snapshot([dict(name="gpus-busy", gpus=8), dict(name="cpu-busy", gpus=8), dict(name="small", cpu=16_000, gpus=4)],
                         [dict(on="gpus-busy", cpu=0, gpus=4, at=(0, 1, 2, 3)), dict(on="cpu-busy", cpu=16_000)])
    scores = make("dotprod", PolicyContext(np.random.default_rng(0))).score(snap, make_pod(cpu=16_000, gpus=1),
                                                                             np.arange(3))
    assert scores.tolist() == [100 * (1 - 0.5625 / 2), 100 * (1 - 0.375 / 2), 100 * (1 - 0.3125 / 2)]


def test_gpu_clustering_bands(make_snapshot, make_pod):
    snap = make_snapshot(CLUSTERING_NODES, CLUSTERING_BOUND)
    scores = make("gpu-clustering", PolicyContext(np.random.default_rng(0))).score(snap, make_pod(share=300),
                                                                                    np.arange(4))
    # 25 * (band + fullness): other 0, idle 1, mixed 2, same 3 (a share of another size is the same
    # class); fullness = 1 - idle milli / 4000
    assert scores.tolist() == pytest.approx([25 * (0 + 1000 / 4000), 25 * 1, 25 * (2 + 1500 / 4000), 25 * (3 + 500 / 4000)])


def test_fgd_fragmentation_by_hand(make_snapshot, make_pod):
    # One node, GPUs free [700, 1000, 200, 0]: 1900 idle milli.
    snap = make_snapshot([dict(name="n", gpus=4)], [dict(on="n", share=300, at=(0,)), dict(on="n", share=800, at=(2,)),
                                                   dict(on="n", gpus=1, at=(3,))])
    workload = workload_of(make_pod, [dict(gpus=1), dict(gpus=1), dict(share=500), dict(gpus=2), dict()])
    assert workload.weights == (0.4, 0.2, 0.2, 0.2)
    # one GPU (p 0.4): fits on GPU1; stranded = GPUs below 1000: 700 + 200 + 0 = 900
    # 500 share (p 0.2): fits; stranded = GPUs below 500: 200 + 0 = 200
    # two GPUs (p 0.2): only one idle GPU, cannot fit: all 1900 idle
    # CPU-only (p 0.2): all 1900 idle
    expected = 0.4 * 900 + 0.2 * 200 + 0.2 * 1900 + 0.2 * 1900
    fgd = make("fgd", PolicyContext(np.random.default_rng(0), workload))
    assert fgd.node_fragmentation(snap).tolist() == pytest.approx([expected])
    # A 300 share, GPU by GPU (the idle milli drops to 1600):
    #   GPU0 [400,1000,200,0]: 0.4*600 + 0.2*600 + 0.2*1600 + 0.2*1600 = 1000
    #   GPU1 [700, 700,200,0]: no idle GPU left, one-GPU shape cannot fit: 0.4*1600 + 0.2*200 + 0.4*1600 = 1320
    #   GPU2 cannot take 300 (200 free)
    assert fgd.choose_shared_gpu(snap, make_pod(share=300), 0) == 0
    # score = 100 * sigmoid((F_before - F_after) / 1000), F_after the best GPU's
    [score] = fgd.score(snap, make_pod(share=300), np.arange(1)).tolist()
    assert score == pytest.approx(100 / (1 + math.exp(-(expected - 1000) / 1000)))


def test_fgd_kept_across_copies_scores_each_copy_as_a_fresh_one(make_snapshot, make_pod):
    """The admission loop scores a new copy of the cluster each cycle with one Fgd: the states it
    kept from one copy must not stand for another copy's nodes, which changed differently."""
    snap = make_snapshot([dict(name=f"n{i}", gpus=4) for i in range(3)], [dict(on="n0", share=300, at=(0,))])
    workload = workload_of(make_pod, [dict(gpus=1), dict(share=500), dict(gpus=2)])
    kept = make("fgd", PolicyContext(np.random.default_rng(0), workload))
    pod, nodes = make_pod(share=500), np.arange(3)
    first, second = snap.copy(), snap.copy()
    kept.score(first, pod, nodes)
    first.assign(make_pod(name="a", gpus=2), 1)
    second.assign(make_pod(name="b", share=700), 1, [0])
    for copy in (first, second, first):
        fresh = make("fgd", PolicyContext(np.random.default_rng(0), workload))
        assert kept.score(copy, pod, nodes).tolist() == fresh.score(copy, pod, nodes).tolist()


def test_fgd_choose_shared_gpu_picks_least_fragmenting_gpu(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="one", gpus=2)], [dict(on="one", share=300, at=(0,))])
    fgd = make("fgd", PolicyContext(np.random.default_rng(0), workload_of(make_pod, HALF_GPU)))
    pod = make_pod(share=300)
    assert snap.default_gpus(pod, 0) == (0,)  # best fit: the fullest GPU that fits
    assert fgd.choose_shared_gpu(snap, pod, 0) == 1  # [700, 700] strands nothing; [400, 1000] strands 400


def test_fgd_counts_gpus_of_an_unlabelled_node_like_any_other(make_snapshot, make_pod):
    # A GPU node without the nvidia.com/gpu.product label (gpu_model None) passes the filters for a
    # pod of no model restriction, and reference.md counts a shape's GPUs as unusable only when
    # "m's GPU model does not match". With a one-GPU workload of no model restriction:
    #   fresh [1000, 1000]: F = 0;  partly [500, 1000]: F = 500 (the 500 left on GPU0)
    # and a 500 share goes to "partly", GPU 0 (F 500 -> 0) rather than "fresh" (F 0 -> 500).
    snap = make_snapshot([dict(name="fresh", gpus=2, model=None), dict(name="partly", gpus=2, model=None)],
                         [dict(on="partly", share=500, at=(0,))])
    workload = workload_of(make_pod, ONE_GPU)
    fgd = make("fgd", PolicyContext(np.random.default_rng(0), workload))
    assert fgd.node_fragmentation(snap).tolist() == [0, 500]
    decision = Placer(build_profile("fgd", workload=workload)).decide(snap, make_pod(share=500))
    assert (decision.node, decision.gpus) == ("partly", (0,))


# Profiles, scores, registry --------------------------------------------------------------------


@pytest.mark.parametrize(
    "pod, names",
    [
        pytest.param(dict(gpus=1), ["gpu-pack"], id="GPU-pod"),
        pytest.param(dict(share=250), ["gpu-pack"], id="share"),
        pytest.param(dict(), ["cpu-spread"], id="CPU-pod"),
        pytest.param(dict(gpus=1, pipeline="p", namespace="ml", datasets=("d",)),
                     ["gpu-pack", "pipeline-spread", "data-locality"], id="GPU-pod-pipeline-dataset"),
        pytest.param(dict(pipeline="p"), ["cpu-spread", "pipeline-spread"], id="CPU-pod-pipeline"),
    ],
)
def test_default_profile_scores_name_the_policies_used(make_snapshot, make_pod, pod, names):
    snap = make_snapshot([dict(name="a", gpus=8), dict(name="b", gpus=2), dict(name="cpu")])
    decision = Placer(build_profile()).decide(snap, make_pod(**pod))
    assert isinstance(decision, Placement)
    assert [name for name, _ in decision.scores] == names
    assert decision.feasible == (2 if pod.get("gpus") or pod.get("share") else 3)
    assert decision.score == pytest.approx(sum(s for _, s in decision.scores) / len(names))
    assert all(0 <= s <= 100 for _, s in decision.scores)


def test_policy_without_an_opinion_gives_no_score(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="a"), dict(name="b")])
    decision = Placer(build_profile("pipeline-spread")).decide(snap, make_pod())
    assert (decision.node, decision.scores, decision.score) == ("a", (), 0.0)


def random_choices(make_snapshot, make_pod, profile) -> list[str]:
    snap = make_snapshot([dict(name=f"n{i}") for i in range(10)])
    placer = Placer(profile)
    out = []
    for k in range(12):
        decision = placer.decide(snap, make_pod(f"p{k}"))
        snap.assign(decision.pod, decision.node_index, decision.gpus)
        out.append(decision.node)
    return out


def test_random_is_reproducible_from_its_seed(make_snapshot, make_pod):
    first = random_choices(make_snapshot, make_pod, build_profile("random", seed=7))
    assert random_choices(make_snapshot, make_pod, build_profile("random", seed=7)) == first
    assert random_choices(make_snapshot, make_pod, build_profile("random", rng=np.random.default_rng(7))) == first
    others = {tuple(random_choices(make_snapshot, make_pod, build_profile("random", seed=s))) for s in range(5)}
    assert len(others) > 1
    assert len(set(first)) > 1  # it does wander


def test_random_draws_a_node_uniformly_and_a_share_s_gpu_among_those_it_fits(make_snapshot, make_pod):
    # Whole-number scores from random numbers would tie among the ~1% drawn highest and go to the
    # lowest index: a bias to the first nodes, which packs. The paper's Random has none.
    snap = make_snapshot([dict(name=f"n{i:04d}") for i in range(1000)])
    placer = Placer(build_profile("random", seed=1))
    chosen = [placer.decide(snap, make_pod(f"p{k}")).node_index for k in range(300)]
    assert 400 < np.mean(chosen) < 600
    # GPUs free [1000, 500, 200, 1000]: a 400 share fits on 0, 1 and 3, and is put on each.
    snap = make_snapshot([dict(name="n", gpus=4)], [dict(on="n", share=500, at=(1,)), dict(on="n", share=800, at=(2,))])
    gpus = {placer.decide(snap, make_pod(f"s{k}", share=400)).gpus for k in range(60)}
    assert gpus == {(0,), (1,), (3,)}


def test_registry_lists_every_policy_and_rejects_unknown_names():
    names = available()
    assert set(names) >= {"gpu-pack", "cpu-spread", "pipeline-spread", "data-locality", "fgd", "bestfit", "dotprod",
                          "gpu-clustering", "gpu-packing", "random"}
    with pytest.raises(ValueError) as err:
        make("nope", PolicyContext(np.random.default_rng(0)))
    assert "'nope'" in str(err.value)
    assert all(name in str(err.value) for name in names)
    with pytest.raises(ValueError):
        build_profile("nope")


def test_fgd_needs_a_target_workload():
    with pytest.raises(ValueError, match="workload"):
        build_profile("fgd")


def test_every_score_is_within_0_and_100(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="a", gpus=8), dict(name="b", gpus=4), dict(name="c", cpu=8000)],
                         [dict(on="a", share=300, at=(2,)), dict(on="b", gpus=2, at=(0, 1), pipeline="x")])
    workload = workload_of(make_pod, [dict(gpus=1), dict(share=500), dict()])
    context = PolicyContext(np.random.default_rng(0), workload)
    for pod in (make_pod(gpus=1, pipeline="x"), make_pod(share=MILLI_PER_GPU // 4, namespace="ml", datasets=("d",)),
                make_pod(pipeline="x")):
        nodes = run_filters(snap, pod).feasible
        for name in available():
            scores = make(name, context).score(snap, pod, nodes)
            if scores is not None:
                assert scores.shape == (len(nodes),) and np.all((scores >= 0) & (scores <= 100)), name
