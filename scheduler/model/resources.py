"""Resource vectors: the one place where amounts of cpu, memory, GPUs and other resources meet.

Every amount is an integer in its resource's base unit, as Kubernetes counts them: cpu in
millicores (``Quantity.MilliValue``), everything else in whole units (``Quantity.Value``), GPU
shares in milli-GPU. Strings come in and go out through :mod:`scheduler.model.quantity`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from scheduler.model.quantity import Quantity, QuantityError, format_quantity, parse_quantity

CPU = "cpu"
MEMORY = "memory"
PODS = "pods"
EPHEMERAL_STORAGE = "ephemeral-storage"
GPU = "nvidia.com/gpu"
#: A share of one GPU in thousandths. 1000 is a whole GPU.
GPU_MILLI = "slotwise.io/gpu-milli"
MIG_PREFIX = "nvidia.com/mig-"
MILLI_PER_GPU = 1000

# Resources Kubernetes allows to be fractional; every other one (extended resources, hugepages,
# pods) must be a whole number, and the API server rejects "0.5" of them.
_FRACTIONAL = {CPU, MEMORY, EPHEMERAL_STORAGE}
_BINARY = {MEMORY, EPHEMERAL_STORAGE}


class ResourceError(ValueError):
    """A resource amount that cannot be used, with the resource named."""


def is_mig(name: str) -> bool:
    return name.startswith(MIG_PREFIX)


def is_gpu(name: str) -> bool:
    """GPU resources are accounted per device, not as a node-wide scalar."""
    return name in (GPU, GPU_MILLI)


def _nonnegative(name: str, quantity: str | int | float) -> Quantity:
    try:
        q = parse_quantity(quantity)
    except QuantityError as exc:
        raise ResourceError(f"{name}: {exc}") from None
    if q.amount < 0:
        raise ResourceError(f"{name}: must not be negative, got '{quantity}'")
    return q


def parse_amount(name: str, quantity: str | int | float) -> int:
    """Parse a Kubernetes quantity for resource ``name`` into its integer base unit."""
    if isinstance(quantity, str | int | float):  # hashable; anything else gets _amount's error
        return _known_amount(name, quantity)
    return _amount(name, quantity)


def _amount(name: str, quantity: str | int | float) -> int:
    q = _nonnegative(name, quantity)
    if name == CPU:
        return q.milli_value()
    if name not in _FRACTIONAL and not name.startswith("hugepages-") and q.amount != q.amount.to_integral_value():
        raise ResourceError(f"{name}: must be a whole number, got '{quantity}'")
    return q.value()


# Clusters use few distinct quantities, and the extender parses every pod it is asked about.
# typed: True must stay an error, not be 1's remembered amount.
_known_amount = functools.lru_cache(maxsize=4096, typed=True)(_amount)


def format_amount(name: str, amount: int) -> str:
    """The canonical Kubernetes string for an amount in ``name``'s base unit."""
    if name == CPU:
        return format_quantity(Decimal(amount) / 1000, "DecimalSI")
    return format_quantity(amount, "BinarySI" if name in _BINARY else "DecimalSI")


# Quota amounts ---------------------------------------------------------------------------
# Quotas count GPUs in milli-GPU under ``nvidia.com/gpu`` (any model) and ``nvidia.com/gpu/<model>``
# (one GPU model), so that a 250m notebook share and a 4-GPU job draw on the same budget. A quota
# of "12" GPUs is 12000; "500m" is half a GPU.


def gpu_quota_resource(model: str) -> str:
    """The quota resource for GPUs of one model (``nvidia.com/gpu/A100-SXM4-80GB``)."""
    return f"{GPU}/{model}"


def is_gpu_quota(name: str) -> bool:
    return name == GPU or name.startswith(GPU + "/")


def parse_quota_amount(name: str, quantity: str | int | float) -> int:
    """Like :func:`parse_amount`, but GPUs in milli-GPU (fractions allowed)."""
    return _nonnegative(name, quantity).milli_value() if is_gpu_quota(name) else parse_amount(name, quantity)


def format_quota_amount(name: str, amount: int) -> str:
    """The inverse of :func:`parse_quota_amount`."""
    return format_amount(CPU if is_gpu_quota(name) else name, amount)


class Resources(Mapping[str, int]):
    """An immutable vector of resource amounts; absent names are zero.

    Zero entries are dropped, so equal vectors compare and hash equal whatever their history.
    """

    __slots__ = ("_amounts",)

    def __init__(self, amounts: Mapping[str, int] | Iterable[tuple[str, int]] = ()):
        items = amounts.items() if isinstance(amounts, Mapping) else amounts
        self._amounts: dict[str, int] = {k: int(v) for k, v in items if v}

    @classmethod
    def parse(cls, quantities: Mapping[str, Any] | None) -> Resources:
        """From a Kubernetes resource list such as ``{"cpu": "500m", "memory": "1Gi"}``."""
        return cls((name, parse_amount(name, q)) for name, q in (quantities or {}).items())

    def to_kubernetes(self) -> dict[str, str]:
        return {name: format_amount(name, v) for name, v in sorted(self._amounts.items())}

    # Mapping protocol -------------------------------------------------------------------
    def __getitem__(self, name: str) -> int:
        return self._amounts.get(name, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._amounts)

    def __len__(self) -> int:
        return len(self._amounts)

    def __contains__(self, name: object) -> bool:
        return name in self._amounts

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Resources):
            return self._amounts == other._amounts
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._amounts.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={format_amount(k, v)}" for k, v in sorted(self._amounts.items()))
        return f"Resources({inner})"

    # Arithmetic -------------------------------------------------------------------------
    def __add__(self, other: Mapping[str, int]) -> Resources:
        out = dict(self._amounts)
        for k, v in other.items():
            out[k] = out.get(k, 0) + v
        return Resources(out)

    def __sub__(self, other: Mapping[str, int]) -> Resources:
        out = dict(self._amounts)
        for k, v in other.items():
            out[k] = out.get(k, 0) - v
        return Resources(out)

    def __mul__(self, factor: int) -> Resources:
        return Resources({k: v * factor for k, v in self._amounts.items()})

    def max(self, other: Mapping[str, int]) -> Resources:
        """Element-wise maximum, as Kubernetes combines init containers with the rest."""
        out = dict(self._amounts)
        for k, v in other.items():
            out[k] = max(out.get(k, 0), v)
        return Resources(out)

    def without(self, names: Iterable[str]) -> Resources:
        drop = set(names)
        return Resources({k: v for k, v in self._amounts.items() if k not in drop})

    def is_nonnegative(self) -> bool:
        return all(v >= 0 for v in self._amounts.values())

    def shortfall(self, capacity: Mapping[str, int]) -> Resources:
        """How much more of each resource ``capacity`` would need to hold this vector."""
        return Resources({k: v - capacity.get(k, 0) for k, v in self._amounts.items() if v > capacity.get(k, 0)})

    def fits(self, capacity: Mapping[str, int]) -> bool:
        return all(v <= capacity.get(k, 0) for k, v in self._amounts.items())

    def dominant_share(self, capacity: Mapping[str, int]) -> tuple[str, float]:
        """The resource this vector uses the largest share of, and that share (DRF).

        A demand for a resource the capacity lacks entirely is an infinite share.
        """
        best: tuple[str, float] = ("", 0.0)
        for k, v in sorted(self._amounts.items()):
            cap = capacity.get(k, 0)
            share = v / cap if cap > 0 else (float("inf") if v > 0 else 0.0)
            if share > best[1]:
                best = (k, share)
        return best


def container_requests(container: Mapping[str, Any]) -> Resources:
    """A container's requests; a resource with a limit but no request is requested at its limit,
    as the API server's defaulting does (and must do for extended resources such as GPUs)."""
    res = container.get("resources") or {}
    limits = res.get("limits") or {}
    requests = res.get("requests") or {}
    return Resources.parse({**limits, **requests})


def pod_requests(spec: Mapping[str, Any]) -> Resources:
    """A pod's effective requests, computed as kube-scheduler does.

    Sum of the app containers; restartable init containers (sidecars) add to that sum and stay
    allocated while later init containers run; the result is the element-wise max of that and
    every init container's peak; pod overhead is added last.
    """
    total = Resources()
    for c in spec.get("containers") or []:
        total = total + container_requests(c)
    sidecars = Resources()
    init_peak = Resources()
    for c in spec.get("initContainers") or []:
        req = container_requests(c)
        if c.get("restartPolicy") == "Always":
            total = total + req
            sidecars = sidecars + req
            init_peak = init_peak.max(sidecars)
        else:
            init_peak = init_peak.max(req + sidecars)
    return total.max(init_peak) + Resources.parse(spec.get("overhead"))
