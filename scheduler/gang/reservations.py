"""Plans held as reservations until their members bind, so nobody takes a gang's room meanwhile.

A reservation is committed to the snapshot as soon as it is made (every later decision sees the
room taken); it ends when all members are bound, or is released whole when its gang times out,
finishes or is evicted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from scheduler.gang.planner import GangPlan, commit
from scheduler.model.snapshot import Snapshot


@dataclass(slots=True)
class Reservation:
    plan: GangPlan
    made_at: float
    unbound: set[str] = field(default_factory=set)


class Reservations:
    def __init__(self) -> None:
        self.by_gang: dict[str, Reservation] = {}
        self.gang_of: dict[str, str] = {}  # member pod key -> gang key, reserved or bound

    def reserve(self, snap: Snapshot, plan: GangPlan, now: float) -> None:
        if plan.gang in self.by_gang:
            raise ValueError(f"gang {plan.gang} already holds a reservation")
        commit(snap, plan)
        keys = {a.pod.key for a in plan.assignments}
        self.by_gang[plan.gang] = Reservation(plan, now, set(keys))
        self.gang_of.update(dict.fromkeys(keys, plan.gang))

    def bind(self, pod_key: str) -> None:
        """A member reached its planned node; the room is its own now."""
        self.by_gang[self.gang_of[pod_key]].unbound.discard(pod_key)

    def release(self, snap: Snapshot, gang: str) -> tuple[str, ...]:
        """Take every member of ``gang`` (bound or not) off the snapshot; returns their keys."""
        reservation = self.by_gang.pop(gang)
        keys = tuple(a.pod.key for a in reservation.plan.assignments)
        for key in keys:
            snap.release(key)
            del self.gang_of[key]
        return keys

    def expired(self, now: float, timeout_s: dict[str, float]) -> list[str]:
        """Gangs whose members have not all bound within their timeout."""
        return [g for g, r in self.by_gang.items() if r.unbound and now - r.made_at >= timeout_s[g]]

    def booked_gpus(self) -> dict[tuple[int, int], int]:
        """Milli-GPU held per (node, GPU) by reservations, bound members included."""
        booked: dict[tuple[int, int], int] = defaultdict(int)
        for r in self.by_gang.values():
            for a in r.plan.assignments:
                for g in a.gpus:
                    booked[(a.node, g)] += a.pod.gpu.milli if a.pod.gpu else 0
        return dict(booked)
