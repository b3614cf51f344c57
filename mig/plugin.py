"""Slot choice inside the placement engine: a filter and a score over a :class:`~mig.slots.Fleet`.

A pod asks a MIG instance as the device plugin's mixed strategy names it
(``nvidia.com/mig-3g.40gb: 1``). The filter rejects nodes without a free valid slot for that
profile; the score ranks nodes by their best slot's cost (no stranded slices first, then the
fuller GPU). Build a placer with :func:`mig_placer`; after a placement, take the slot on the
chosen node with ``fleet.choose(profile, [node])`` and ``fleet.bind``. Both read a fixed fleet or,
in the live service, the one node reports describe now (:class:`mig.store.ReportedFleet`).

The snapshot accounts MIG resources as plain counts; for instances that are created on demand,
nodes advertise an upper bound (:func:`advertised`) and the geometry is judged here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from mig.catalog import GpuModel, profile_for_resource
from mig.slots import NO_FIT, Fleet, split_key
from scheduler.model.cluster import Pod
from scheduler.model.resources import Resources, is_mig
from scheduler.model.snapshot import Snapshot
from scheduler.placement.engine import Placer
from scheduler.placement.filters import DEFAULT_FILTERS, Filter, Mask
from scheduler.placement.profile import Profile


def requested_profile(pod: Pod) -> tuple[str | None, str | None]:
    """The MIG profile a pod asks, or why slotwise cannot place its request: ``(profile, problem)``."""
    asked = {name: n for name, n in pod.requests.items() if is_mig(name)}
    if not asked:
        return None, None
    if len(asked) > 1 or next(iter(asked.values())) != 1:
        return None, "asks more than one MIG instance; slotwise places one instance per pod"
    return profile_for_resource(next(iter(asked))), None


def advertised(model: GpuModel, gpus: int) -> Resources:
    """The most instances of each profile ``gpus`` GPUs of ``model`` could hold: what a node with
    on-demand instances advertises, so that the snapshot's counts never reject what the geometry allows."""
    return Resources({p.resource: p.max_count * gpus for p in model.profiles})


#: Gives the fleet to decide on now (one rebuilt from node reports, a trial copy).
FleetSource = Callable[[], Fleet]


class _FleetView:
    """Fleet node index of each snapshot node (-1 where the fleet lacks it), per snapshot and fleet."""

    def __init__(self, fleet: Fleet | FleetSource):
        self._fleet = fleet
        self._rows: tuple[int, Fleet, np.ndarray] | None = None

    @property
    def fleet(self) -> Fleet:
        return self._fleet if isinstance(self._fleet, Fleet) else self._fleet()

    def rows(self, snap: Snapshot, fleet: Fleet) -> np.ndarray:
        # Keyed by the fleet object itself (kept alive here), so a rebuilt one never reuses rows.
        if self._rows is None or self._rows[0] != snap.uid or self._rows[1] is not fleet:
            idx = fleet.node_index
            self._rows = (snap.uid, fleet, np.array([idx.get(n, -1) for n in snap.names], dtype=np.int64))
        return self._rows[2]

    def node_keys(self, snap: Snapshot, profile: str, fleet: Fleet | None = None) -> np.ndarray:
        fleet = fleet if fleet is not None else self.fleet
        rows = self.rows(snap, fleet)
        out = np.full(len(rows), NO_FIT, dtype=np.int64)
        known = rows >= 0  # none at all while no agent has reported (after a restart)
        out[known] = fleet.node_keys(profile)[rows[known]]
        return out


class MigSlotFilter(_FleetView):
    name = "mig-slots"

    def __call__(self, snap: Snapshot, pod: Pod) -> Iterator[tuple[str, Mask]]:
        profile, problem = requested_profile(pod)
        if problem:
            yield problem, np.ones(len(snap), dtype=bool)
        elif profile is not None:
            fleet = self.fleet
            known = self.rows(snap, fleet) >= 0
            yield "no MIG layout reported for the node", ~known
            yield f"no free valid MIG slot for {profile}", known & (self.node_keys(snap, profile, fleet) == NO_FIT)


class MigSlotScore(_FleetView):
    """100 for a slot that strands nothing on a GPU it fills; 10 points less per stranded slice
    (weighted by the demand mix) and one less per slice left free on the GPU. No opinion on pods
    that ask no MIG instance."""

    name = "mig-slots"

    def score(self, snap: Snapshot, pod: Pod, nodes: np.ndarray) -> np.ndarray | None:
        profile, _ = requested_profile(pod)
        if profile is None:
            return None
        keys = self.node_keys(snap, profile)[nodes]
        waste, free = split_key(keys)
        return np.clip(100.0 - waste - free, 0.0, 100.0)


def with_mig_score(fleet: Fleet | FleetSource, profile: Profile, weight: float = 1.0) -> Profile:
    """``profile`` with the MIG score added to GPU and cpu work (it speaks only for MIG pods)."""
    score = MigSlotScore(fleet)
    return replace(profile, gpu=(*profile.gpu, (score, weight)), cpu=(*profile.cpu, (score, weight)))


def mig_placer(fleet: Fleet | FleetSource, profile: Profile, filters: Sequence[Filter] = DEFAULT_FILTERS,
               weight: float = 1.0) -> Placer:
    """``profile`` with the MIG score added, behind ``filters`` plus the MIG filter."""
    return Placer(with_mig_score(fleet, profile, weight), (*filters, MigSlotFilter(fleet)))
