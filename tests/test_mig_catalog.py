"""The MIG catalog: profiles and slots per GPU model, resource names, GPU product names."""

from __future__ import annotations

import pytest

from mig.catalog import MODELS, CatalogError, model_for_product, profile_for_kind, profile_for_resource


@pytest.mark.parametrize(
    ("product", "model"),
    [
        ("NVIDIA-A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA-A100-80GB-PCIe", "A100-80GB"),
        ("A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA-A100-PCIE-40GB", "A100-40GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),  # as NVML names it
        ("NVIDIA-H100-80GB-HBM3", "H100-80GB"),
        ("NVIDIA-H100-PCIe", "H100-80GB"),
        ("NVIDIA-H100-NVL", "H100-NVL-94GB"),
        ("NVIDIA-H200", "H200-141GB"),
        ("NVIDIA-A30", "A30-24GB"),
        ("A100-80GB", "A100-80GB"),
    ],
)
def test_gpu_feature_discovery_products_map_to_models(product, model):
    assert model_for_product(product).name == model


@pytest.mark.parametrize("product", ["Tesla-T4", "NVIDIA-A10", "NVIDIA-A100-SXM4-96GB", ""])
def test_unknown_products_are_refused_with_the_known_models(product):
    with pytest.raises(CatalogError, match="known models: A100-40GB"):
        model_for_product(product)


def test_reference_geometry_of_eight_slice_gpus():
    m = MODELS["A100-80GB"]
    two, three, four = m.profile("2g.20gb"), m.profile("3g.40gb"), m.profile("4g.40gb")
    assert (two.starts, two.size, two.max_count) == ((0, 2, 4), 2, 3)
    assert (three.starts, three.size, three.compute) == ((0, 4), 4, 3)
    assert four.starts == (0,)
    assert m.profile("1g.20gb").starts == (0, 2, 4, 6)  # double-memory 1g
    assert m.profile("1g.10gb+me").max_count == 1
    assert [p.name for p in MODELS["A100-40GB"].profiles] == [
        "1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]
    assert MODELS["H200-141GB"].inferred and not MODELS["H100-80GB"].inferred
    assert MODELS["H100-NVL-94GB"].profile("3g.47gb").size == 4


def test_a30_has_four_slices():
    a30 = MODELS["A30-24GB"]
    assert (a30.memory_slices, a30.compute_slices) == (4, 4)
    assert a30.profile("2g.12gb").starts == (0, 2)
    assert a30.profile("2g.12gb+me").max_count == 1
    assert profile_for_kind(a30, "2g").name == "2g.12gb"


def test_resource_names_follow_the_device_plugin_mixed_strategy():
    m = MODELS["A100-40GB"]
    assert m.profile("3g.20gb").resource == "nvidia.com/mig-3g.20gb"
    assert m.profile("1g.5gb+me").resource == "nvidia.com/mig-1g.5gb.me"
    assert profile_for_resource("nvidia.com/mig-1g.5gb.me") == "1g.5gb+me"
    assert profile_for_resource("nvidia.com/mig-3g.20gb") == "3g.20gb"
    assert profile_for_resource("nvidia.com/gpu") is None


def test_unknown_profile_names_what_the_model_offers():
    with pytest.raises(CatalogError, match="A30-24GB has no MIG profile '3g.20gb'; it offers 1g.6gb"):
        MODELS["A30-24GB"].profile("3g.20gb")
