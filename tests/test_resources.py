"""Resource vectors and pod requests as kube-scheduler computes them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.model.resources import (
    CPU,
    GPU,
    MEMORY,
    ResourceError,
    Resources,
    format_amount,
    parse_amount,
    pod_requests,
)

MIG = "nvidia.com/mig-3g.20gb"


@pytest.mark.parametrize(
    ("name", "text", "amount"),
    [
        (CPU, "100m", 100),
        (CPU, "1.5", 1500),
        (CPU, "2", 2000),
        (CPU, "0.0001", 1),  # MilliValue rounds up, as kube-scheduler does
        (MEMORY, "16Gi", 16 * 2**30),
        (MEMORY, "500M", 500_000_000),
        (MEMORY, "1e3", 1000),
        (MEMORY, "0.5Ki", 512),
        (GPU, "4", 4),
        (MIG, "2", 2),
        ("example.com/fpga", 1, 1),
    ],
)
def test_amounts_parse_into_base_units(name: str, text: str, amount: int) -> None:
    assert parse_amount(name, text) == amount


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (GPU, "0.5", "must be a whole number"),
        (MIG, "1.5", "must be a whole number"),
        (CPU, "-1", "must not be negative"),
        (MEMORY, "12 GB", "memory"),
        (CPU, "", "cpu"),
    ],
)
def test_unusable_amounts_name_the_resource(name: str, text: str, message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        parse_amount(name, text)


def test_remembered_amounts_answer_only_for_the_same_value_and_type() -> None:
    assert parse_amount(CPU, 1) == parse_amount(CPU, 1.0) == parse_amount(CPU, "1") == 1000
    for unusable in (True, [1], {"1": 1}):  # True equals 1 and hashes like it, but is no quantity
        with pytest.raises(ResourceError, match="expected a string or a number"):
            parse_amount(CPU, unusable)


@pytest.mark.parametrize(
    ("name", "amount", "text"),
    [
        (CPU, 1500, "1500m"),
        (CPU, 2000, "2"),
        (MEMORY, 16 * 2**30, "16Gi"),
        # Memory prints in binary suffixes; an amount that is no whole multiple of 1024 prints plain.
        (MEMORY, 500_000_000, "500000000"),
        (GPU, 8, "8"),
        (GPU, 1000, "1k"),
    ],
)
def test_amounts_format_as_kubernetes_prints_them(name: str, amount: int, text: str) -> None:
    assert format_amount(name, amount) == text


def test_vectors_add_subtract_and_drop_zeros() -> None:
    a = Resources({CPU: 1000, MEMORY: 2**30, GPU: 1})
    b = Resources({CPU: 500, GPU: 1, MIG: 1})
    assert a + b == Resources({CPU: 1500, MEMORY: 2**30, GPU: 2, MIG: 1})
    assert (a + b) - b == a
    assert GPU not in a - Resources({GPU: 1})
    assert a - a == Resources() and len(a - a) == 0
    assert (a - b)[MIG] == -1 and not (a - b).is_nonnegative()
    assert hash(Resources({CPU: 1, GPU: 0})) == hash(Resources({CPU: 1}))


def test_fits_shortfall_and_max() -> None:
    capacity = Resources({CPU: 4000, MEMORY: 8 * 2**30, GPU: 2})
    assert Resources({CPU: 4000, GPU: 2}).fits(capacity)
    assert not Resources({CPU: 1000, MIG: 1}).fits(capacity)
    assert Resources({CPU: 5000, GPU: 1, MIG: 1}).shortfall(capacity) == Resources({CPU: 1000, MIG: 1})
    assert Resources({CPU: 1, GPU: 3}).max(Resources({CPU: 2, MEMORY: 5})) == Resources({CPU: 2, GPU: 3, MEMORY: 5})


def test_dominant_share_is_the_largest_fraction_of_capacity() -> None:
    capacity = Resources({CPU: 100_000, MEMORY: 1000 * 2**30, GPU: 10})
    assert Resources({CPU: 20_000, MEMORY: 100 * 2**30, GPU: 1}).dominant_share(capacity) == (CPU, 0.2)
    assert Resources({CPU: 1000, GPU: 5}).dominant_share(capacity) == (GPU, 0.5)
    assert Resources({MIG: 1}).dominant_share(capacity) == (MIG, float("inf"))
    assert Resources().dominant_share(capacity) == ("", 0.0)


def test_round_trip_through_kubernetes_strings() -> None:
    r = Resources({CPU: 2500, MEMORY: 3 * 2**30, GPU: 1, MIG: 2})
    assert r.to_kubernetes() == {CPU: "2500m", MEMORY: "3Gi", GPU: "1", MIG: "2"}
    assert Resources.parse(r.to_kubernetes()) == r


names = st.sampled_from([CPU, MEMORY, GPU, MIG, "example.com/fpga"])
vectors = st.dictionaries(names, st.integers(0, 10**12)).map(Resources)


@given(vectors, vectors)
def test_addition_then_subtraction_restores_the_vector(a: Resources, b: Resources) -> None:
    assert (a + b) - b == a
    assert a.fits(a + b)
    assert a.max(b).fits(a + b) and a.fits(a.max(b)) and b.fits(a.max(b))


@given(vectors)
def test_kubernetes_strings_round_trip(r: Resources) -> None:
    assert Resources.parse(r.to_kubernetes()) == r


def _container(name: str, requests: dict | None = None, limits: dict | None = None, **extra) -> dict:
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {"name": name, "image": "busybox", "resources": resources, **extra}


def test_pod_requests_sum_containers_and_add_overhead() -> None:
    spec = {
        "containers": [
            _container("a", {"cpu": "500m", "memory": "1Gi"}),
            _container("b", {"cpu": "1"}, {"nvidia.com/gpu": "2"}),  # a limit alone is the request
        ],
        "overhead": {"cpu": "250m", "memory": "120Mi"},
    }
    assert pod_requests(spec) == Resources({CPU: 1750, MEMORY: 2**30 + 120 * 2**20, GPU: 2})


def test_an_explicit_request_wins_over_its_limit() -> None:
    spec = {"containers": [_container("a", {"cpu": "250m"}, {"cpu": "2", "memory": "1Gi"})]}
    assert pod_requests(spec) == Resources({CPU: 250, MEMORY: 2**30})


def test_init_containers_raise_the_peak_but_do_not_add() -> None:
    spec = {
        "initContainers": [_container("fetch", {"cpu": "2", "memory": "256Mi"}), _container("warm", {"memory": "4Gi"})],
        "containers": [_container("main", {"cpu": "1", "memory": "1Gi"}), _container("side", {"cpu": "500m"})],
    }
    assert pod_requests(spec) == Resources({CPU: 2000, MEMORY: 4 * 2**30})


def test_sidecars_add_to_the_sum_and_to_later_init_containers() -> None:
    # The sidecar (restartPolicy Always) keeps running beside the later init container and the app.
    spec = {
        "initContainers": [
            _container("proxy", {"cpu": "100m", "memory": "64Mi"}, restartPolicy="Always"),
            _container("migrate", {"cpu": "3"}),
        ],
        "containers": [_container("main", {"cpu": "1", "memory": "1Gi"})],
    }
    assert pod_requests(spec) == Resources({CPU: 3100, MEMORY: 2**30 + 64 * 2**20})


def test_a_pod_without_requests_requests_nothing() -> None:
    assert pod_requests({"containers": [{"name": "a", "image": "x"}]}) == Resources()
