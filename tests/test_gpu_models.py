"""Requested GPU models against GPU Feature Discovery's product names, in every path that compares them."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burst.decide import Overflow, decide_burst
from burst.targets import burst_from_yaml
from quota.admission import Admit, Request, decide
from quota.config import config_from_yaml
from quota.ledger import Ledger
from scheduler.model.gpu_models import accepts_model, model_matches
from scheduler.model.k8s_json import pod_from_k8s
from scheduler.model.resources import GPU, Resources
from scheduler.placement.decision import Placement, Unschedulable
from scheduler.placement.engine import Placer
from scheduler.placement.filters import GpuModel
from scheduler.placement.policies.fgd import Fgd
from scheduler.placement.profile import build_profile
from scheduler.placement.workload import TargetWorkload

MATCHES = [
    ("A100", "NVIDIA-A100-SXM4-80GB"),
    ("A100", "A100-PCIE-40GB"),
    ("a100", "NVIDIA-A100-SXM4-80GB"),  # case-insensitive
    ("A100-80GB", "A100-SXM4-80GB"),
    ("A100-SXM4", "NVIDIA-A100-SXM4-40GB"),
    ("NVIDIA-A100-SXM4-80GB", "A100-SXM4-80GB"),  # the vendor prefix is ignored on either side
    ("A100 SXM4 80GB", "NVIDIA-A100-SXM4-80GB"),  # NVML's spaces for GFD's dashes
    ("A100-SXM4-80GB", "A100-SXM4-80GB"),  # exact names keep matching
    ("H100", "NVIDIA-H100-80GB-HBM3"),
    ("H100-HBM3", "NVIDIA-H100-80GB-HBM3"),
    ("T4", "Tesla-T4"),
    ("T4", "NVIDIA-Tesla-T4"),
    ("T4", "Tesla-T4-SHARED"),  # a time-sliced T4 is still a T4
    ("A10", "NVIDIA-A10"),
    ("RTX-A6000", "NVIDIA-RTX-A6000"),
    ("A100-MIG-1g.5gb", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"),
    ("V100M32", "V100M32"),  # openb's single-token names
    ("80GB", "80GB"),
]
MISMATCHES = [
    ("A10", "NVIDIA-A100-SXM4-80GB"),  # tokens, not prefixes
    ("A10", "A100-PCIE-40GB"),
    ("A100", "NVIDIA-A10"),
    ("A100-80GB", "A100-PCIE-40GB"),
    ("A100-80GB-SXM4", "A100-SXM4-80GB"),  # tokens in the product's order
    ("80GB", "NVIDIA-A100-SXM4-80GB"),  # a bare memory token names no model
    ("SXM4", "NVIDIA-A100-SXM4-80GB"),
    ("A100", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"),  # a MIG slice is not a whole GPU
    ("A100-40GB", "A100-SXM4-40GB-MIG-1g.5gb-SHARED"),
    ("V100", "V100M32"),
    ("V100M16", "V100M32"),
    ("G2", "G3"),
    ("NVIDIA", "NVIDIA-A100-SXM4-80GB"),
    ("", "A100"),
]


@pytest.mark.parametrize("wanted, product", MATCHES)
def test_matching_names(wanted, product):
    assert model_matches(wanted, product)


@pytest.mark.parametrize("wanted, product", MISMATCHES)
def test_non_matching_names(wanted, product):
    assert not model_matches(wanted, product)


def test_accepts_any_of_the_wanted_models_and_none_means_any():
    assert accepts_model(frozenset({"T4", "A100"}), "NVIDIA-A100-SXM4-80GB")
    assert not accepts_model(frozenset({"T4", "A10"}), "NVIDIA-A100-SXM4-80GB")
    assert accepts_model(None, None) and accepts_model(None, "Tesla-T4")
    assert not accepts_model(frozenset({"A100"}), None)  # a GPU of unknown model satisfies no restriction


# Label values are ASCII: letters, digits, dashes, dots (and NVML's spaces).
NAMES = st.text(string.ascii_letters + string.digits + "-. ", max_size=30)


@given(NAMES)
def test_a_model_always_matches_itself(name):
    assert model_matches(name, name)


@given(NAMES, NAMES)
def test_matching_is_case_insensitive(wanted, product):
    expected = model_matches(wanted, product)
    assert model_matches(wanted.swapcase(), product) == expected
    assert model_matches(wanted.lower(), product.upper()) == expected


# Every path that compares models -------------------------------------------------------------


def test_a100_places_on_a_gfd_labelled_node_and_is_refused_on_t4(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="t4", gpus=8, model="Tesla-T4"),
                          dict(name="a100", gpus=8, model="A100-SXM4-80GB")])
    decision = Placer(build_profile()).decide(snap, make_pod(gpus=4, models="A100"))
    assert isinstance(decision, Placement) and decision.node == "a100"

    only_t4 = make_snapshot([dict(name="t4", gpus=8, model="Tesla-T4")])
    refused = Placer(build_profile()).decide(only_t4, make_pod(gpus=4, models="A100"))
    assert isinstance(refused, Unschedulable)
    assert refused.message == "0/1 nodes are available: 1 GPU model not A100."


def test_the_filter_resolves_each_distinct_model_set_once(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="a40", gpus=1, model="NVIDIA-A100-PCIE-40GB"),
                          dict(name="a80", gpus=1, model="NVIDIA-A100-SXM4-80GB"),
                          dict(name="a10", gpus=1, model="NVIDIA-A10")])
    pod = make_pod(gpus=1, models="A100-80GB|A10")
    first = snap.gpu_model_nodes(pod.gpu.models)
    assert first.tolist() == [False, True, True]
    assert snap.gpu_model_nodes(frozenset({"A10", "A100-80GB"})) is first  # cached per set
    assert not first.flags.writeable  # shared between calls: never to be changed in place
    rejected = [(reason, mask.tolist()) for reason, mask in GpuModel()(snap, pod)]
    assert rejected == [("GPU model not A10|A100-80GB", [True, False, False])]


def test_fgd_counts_a_shape_as_fitting_the_gpus_it_names(make_snapshot, make_pod):
    snap = make_snapshot([dict(name="a100", gpus=1, model="NVIDIA-A100-SXM4-80GB"),
                          dict(name="t4", gpus=1, model="Tesla-T4")])
    policy = Fgd(TargetWorkload.from_pods([make_pod(gpus=1, models="A100")]))
    # A whole idle GPU fits the A100 shape on the A100 node (nothing stranded) but not on the T4 node.
    assert policy.node_fragmentation(snap).tolist() == [0.0, 1000.0]


QUOTA = """
pools:
- {name: nlp, guaranteed: {nvidia.com/gpu/Tesla-T4: 4, nvidia.com/gpu/NVIDIA-A100-SXM4-80GB: 4}}
"""


def test_quota_charges_the_governed_model_a_request_names():
    ledger = Ledger(config_from_yaml(QUOTA), None)
    decision = decide(ledger, Request("r", "nlp", Resources({GPU: 2000}), 0, frozenset({"A100"})), now=0)
    assert isinstance(decision, Admit) and decision.gpu_model == "NVIDIA-A100-SXM4-80GB"


def test_overflow_offers_the_instance_types_a_request_names():
    config = burst_from_yaml((Path(__file__).resolve().parents[1] / "docs" / "examples" / "burst.yaml").read_text())

    def specs(models: str) -> list[str]:
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "namespace": "nlp", "annotations": {"slotwise.io/gpu-models": models}},
               "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {
                   "cpu": "4", "memory": "12Gi", "nvidia.com/gpu": "1"}}}]}}
        pod = pod_from_k8s(obj)
        decision = decide_burst(config, pod.key, [pod], 3600.0, None, 1000.0)
        assert isinstance(decision, Overflow)
        return sorted({s.gpu_model for o in decision.offers for s in o.specs})

    assert specs("A100") == ["A100-SXM4-40GB"]
    assert specs("A10") == ["A10"]
