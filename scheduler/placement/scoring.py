"""Score stage: the one small interface every placement policy implements, and their registry.

A policy is one module in :mod:`scheduler.placement.policies` that registers a factory with
:func:`policy`; it is found by name from then on (``make("fgd", context)``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from scheduler.model.cluster import Pod
from scheduler.model.snapshot import Snapshot
from scheduler.placement.workload import TargetWorkload

MAX_SCORE = 100.0


class Scorer(Protocol):
    name: str

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray | None:
        """A score in [0, 100] for each of ``nodes`` (higher is better), or None when the policy
        has no opinion on this pod (a pipeline policy for a pod of no pipeline)."""
        ...


@runtime_checkable
class SharedGpuChooser(Protocol):
    """A policy that also picks which GPU a GPU-sharing pod uses on the chosen node."""

    def choose_shared_gpu(self, snap: Snapshot, pod: Pod, node: int) -> int: ...


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What policies may be built with: injected randomness and the expected workload."""

    rng: np.random.Generator
    workload: TargetWorkload | None = None


Factory = Callable[[PolicyContext], Scorer]
_FACTORIES: dict[str, Factory] = {}


def policy(name: str) -> Callable[[Factory], Factory]:
    def register(factory: Factory) -> Factory:
        if name in _FACTORIES:
            raise ValueError(f"placement policy {name!r} registered twice")
        _FACTORIES[name] = factory
        return factory

    return register


def _load_builtin() -> None:
    from scheduler.placement import policies

    for module in pkgutil.iter_modules(policies.__path__):
        importlib.import_module(f"{policies.__name__}.{module.name}")


def available() -> tuple[str, ...]:
    _load_builtin()
    return tuple(sorted(_FACTORIES))


def make(name: str, context: PolicyContext) -> Scorer:
    _load_builtin()
    if name not in _FACTORIES:
        raise ValueError(f"unknown placement policy {name!r}; choose from {', '.join(available())}")
    return _FACTORIES[name](context)
