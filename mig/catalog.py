"""The MIG catalog: which GPU instance profiles each GPU model offers, and on which slots.

A placement is ``(start, size)`` in memory slices, as NVML's ``nvmlGpuInstancePlacement_t``
counts them. A100, H100 and H200 have 8 memory slices and 7 compute slices; A30 has 4 and 4.
H200 placements are inferred from H100's fractions and are not confirmed on hardware.

Profile names are NVIDIA's (``3g.40gb``, ``1g.10gb+me``); the device plugin's mixed strategy
advertises each as an extended resource, with ``+`` turned into ``.`` because resource names
may not contain ``+`` (``nvidia.com/mig-1g.10gb.me``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scheduler.model.resources import MIG_PREFIX

#: Driver branch from which 4g at slot 0 and 3g at slot 4 may share a GPU.
DRIVER_4G_WITH_3G = 510


class CatalogError(ValueError):
    """A GPU model or MIG profile slotwise does not know, with what it does know."""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str  # "3g.40gb", "1g.10gb+me"
    compute: int  # compute slices
    size: int  # memory slices a placement spans
    max_count: int  # per GPU
    starts: tuple[int, ...]  # valid start slots

    @property
    def media(self) -> bool:
        """Media extensions (decoders, JPEG, OFA): one such instance per GPU."""
        return self.name.endswith("+me")

    @property
    def resource(self) -> str:
        return MIG_PREFIX + self.name.replace("+", ".")

    def mask(self, start: int) -> int:
        """The memory slices a placement at ``start`` occupies, as a bit mask."""
        return ((1 << self.size) - 1) << start


@dataclass(frozen=True, slots=True)
class GpuModel:
    name: str  # "A100-80GB"
    memory_slices: int
    compute_slices: int
    profiles: tuple[Profile, ...]
    inferred: bool = False  # placements not confirmed on hardware

    def profile(self, name: str) -> Profile:
        for p in self.profiles:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.profiles)
        raise CatalogError(f"{self.name} has no MIG profile {name!r}; it offers {known}")

    def has(self, name: str) -> bool:
        return any(p.name == name for p in self.profiles)

    @property
    def full_mask(self) -> int:
        return (1 << self.memory_slices) - 1


def _eight_slice(name: str, one: str, one_double: str, two: str, three: str, four: str, seven: str,
                 inferred: bool = False) -> GpuModel:
    """The common geometry of 8-memory-slice GPUs, given each profile's memory in the name."""
    every = tuple(range(7))
    even = (0, 2, 4, 6)
    return GpuModel(name, 8, 7, (
        Profile(f"1g.{one}gb", 1, 1, 7, every),
        Profile(f"1g.{one}gb+me", 1, 1, 1, every),
        Profile(f"1g.{one_double}gb", 1, 2, 4, even),
        Profile(f"2g.{two}gb", 2, 2, 3, (0, 2, 4)),
        Profile(f"3g.{three}gb", 3, 4, 2, (0, 4)),
        Profile(f"4g.{four}gb", 4, 4, 1, (0,)),
        Profile(f"7g.{seven}gb", 7, 8, 1, (0,)),
    ), inferred)


A30_24GB = GpuModel("A30-24GB", 4, 4, (
    Profile("1g.6gb", 1, 1, 4, (0, 1, 2, 3)),
    Profile("1g.6gb+me", 1, 1, 1, (0, 1, 2, 3)),
    Profile("2g.12gb", 2, 2, 2, (0, 2)),
    Profile("2g.12gb+me", 2, 2, 1, (0, 2)),
    Profile("4g.24gb", 4, 4, 1, (0,)),
))

MODELS: dict[str, GpuModel] = {
    m.name: m
    for m in (
        _eight_slice("A100-40GB", "5", "10", "10", "20", "20", "40"),
        _eight_slice("A100-80GB", "10", "20", "20", "40", "40", "80"),
        A30_24GB,
        _eight_slice("H100-80GB", "10", "20", "20", "40", "40", "80"),
        _eight_slice("H100-NVL-94GB", "12", "24", "24", "47", "47", "94"),
        _eight_slice("H200-141GB", "18", "35", "35", "71", "71", "141", inferred=True),
    )
}

_MEMORY = re.compile(r"^(\d+)GB$")


def model_for_product(product: str) -> GpuModel:
    """The catalog model of a GPU product as GPU Feature Discovery labels it
    (``nvidia.com/gpu.product``: ``NVIDIA-A100-SXM4-80GB``, ``A100-PCIE-40GB``,
    ``NVIDIA-H100-80GB-HBM3``, ``NVIDIA-H100-NVL``), as NVML names it (``NVIDIA A100-SXM4-80GB``)
    or by catalog name (``A100-80GB``). The vendor prefix and the form factor do not matter."""
    if product in MODELS:
        return MODELS[product]
    tokens = [t for t in re.split(r"[-_ ]+", product.upper()) if t and t != "NVIDIA"]
    family = tokens[0] if tokens else ""
    memory = next((int(m.group(1)) for t in tokens if (m := _MEMORY.match(t))), None)
    name = None
    if family == "A30":
        name = "A30-24GB"
    elif family == "A100":
        name = "A100-80GB" if memory == 80 else "A100-40GB" if memory in (None, 40) else None
    elif family == "H100":
        if "NVL" in tokens or memory == 94:
            name = "H100-NVL-94GB"
        elif memory in (None, 80):
            name = "H100-80GB"
    elif family == "H200":
        name = "H200-141GB" if memory in (None, 141) else None
    if name is None:
        raise CatalogError(f"GPU product {product!r} is not MIG-capable in the catalog; known models: {', '.join(MODELS)}")
    return MODELS[name]


def profile_for_resource(resource: str) -> str | None:
    """The profile name a ``nvidia.com/mig-...`` resource stands for (``1g.10gb.me`` -> ``1g.10gb+me``)."""
    if not resource.startswith(MIG_PREFIX):
        return None
    name = resource[len(MIG_PREFIX):]
    return name[: -len(".me")] + "+me" if name.endswith(".me") else name


def models_offering(profile: str) -> tuple[GpuModel, ...]:
    return tuple(m for m in MODELS.values() if m.has(profile))


def profile_for_kind(model: GpuModel, kind: str) -> Profile:
    """The plain (single-memory, no media extension) profile of ``kind`` compute slices (``3g``)."""
    for p in model.profiles:
        if f"{p.compute}g" == kind and not p.media and p.size == _plain_size(model, p.compute):
            return p
    raise CatalogError(f"{model.name} has no {kind} profile")


def _plain_size(model: GpuModel, compute: int) -> int:
    return min(p.size for p in model.profiles if p.compute == compute)
