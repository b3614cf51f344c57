"""The gang admission loop's state: gangs gathering members, planned all-or-nothing in arrival
order, reserved until bound, released whole (timeout, finish, eviction of any one member).

Time is passed in (``now``); nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from scheduler.gang.groups import Gang
from scheduler.gang.planner import GangPlan, plan_gang
from scheduler.gang.reservations import Reservations
from scheduler.gang.topology import Topology
from scheduler.model.snapshot import Snapshot
from scheduler.placement.engine import Placer


@dataclass(frozen=True, slots=True)
class TimedOut:
    gang: str
    reason: str
    released: tuple[str, ...]  # member pods taken off their nodes


class GangQueue:
    def __init__(self, placer: Placer, snap: Snapshot, topology: Topology | None = None):
        self.placer = placer
        self.snap = snap
        self.topology = topology or Topology(snap)
        self.reservations = Reservations()
        self.waiting: dict[str, tuple[Gang, float]] = {}  # gang key -> (gang, waiting since)
        self.timeout_s: dict[str, float] = {}
        self.reasons: dict[str, str] = {}

    def submit(self, gangs: Iterable[Gang], now: float) -> None:
        """Gangs (or more members of a waiting gang) join the queue."""
        for gang in gangs:
            if gang.key in self.reservations.by_gang:
                raise ValueError(f"gang {gang.key} is already placed")
            known = self.waiting.get(gang.key)
            merged = gang if known is None else replace(known[0], members=known[0].members + gang.members)
            self.waiting[gang.key] = (merged, now if known is None else known[1])
            self.timeout_s[gang.key] = gang.timeout_s

    def schedule(self, now: float) -> list[GangPlan | TimedOut]:
        """Release what timed out, then plan and reserve each waiting gang in turn."""
        out: list[GangPlan | TimedOut] = []
        for key in self.reservations.expired(now, self.timeout_s):
            out.append(TimedOut(key, f"gang {key}: members did not bind within {self.timeout_s[key]:g} s",
                                self.reservations.release(self.snap, key)))
        for key, (gang, since) in list(self.waiting.items()):
            decision = plan_gang(self.placer, self.snap, gang, self.topology)
            if isinstance(decision, GangPlan):
                self.reservations.reserve(self.snap, decision, now)
                del self.waiting[key]
                self.reasons.pop(key, None)
                out.append(decision)
            elif now - since >= gang.timeout_s:
                del self.waiting[key]
                out.append(TimedOut(key, f"{decision.reason}; gave up after {gang.timeout_s:g} s", ()))
            else:
                self.reasons[key] = decision.reason
        return out

    def bind(self, pod_key: str) -> None:
        self.reservations.bind(pod_key)

    def finish(self, gang: str) -> tuple[str, ...]:
        """The gang ended (or is evicted): all its members leave together."""
        return self.reservations.release(self.snap, gang)

    def evict(self, pod_key: str) -> tuple[str, ...]:
        """Evicting one member evicts its gang: a gang never runs below its minimum."""
        return self.finish(self.reservations.gang_of[pod_key])

    def why(self, gang: str) -> str | None:
        return self.reasons.get(gang)


def whole_gangs(victims: Iterable[str], gang_of: dict[str, str], members: dict[str, tuple[str, ...]]) -> list[str]:
    """A preemption victim set closed over gangs: a member pulls in every member of its gang."""
    out: dict[str, None] = {}
    for key in victims:
        gang = gang_of.get(key)
        out.update(dict.fromkeys(members[gang] if gang is not None else (key,)))
    return list(out)
