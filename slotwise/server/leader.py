"""Leader election over a ``coordination.k8s.io/v1`` Lease, the way kube-scheduler and
kube-controller-manager elect theirs (client-go's ``leaderelection``), so that of several
replicas exactly one runs the admission loop.

A candidate takes the lease once its record has not changed for the lease's duration *as the
candidate observed it* (its own monotonic clock: no two machines' clocks are compared). The
leader renews every ``retry_s`` and stops deciding once it has not renewed for
``renew_deadline_s``, which is shorter than the duration: the old leader has stopped before any
other may start, even if it was paused and resumed. Its database writes are fenced as well
(``quota.store.Store.fenced``), for a pause that falls between the check and the write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timings:
    """kube-scheduler's defaults (``--leader-elect-lease-duration`` and its siblings)."""

    duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_s < self.renew_deadline_s < self.duration_s:
            raise ValueError("leader election needs 0 < retry < renew deadline < lease duration")


class LeaseConflict(Exception):
    """Another candidate wrote (or created) the lease first."""


class Leases(Protocol):
    """One Lease object: ``read`` gives its ``spec`` and ``resourceVersion`` (None: there is none)."""

    def read(self) -> tuple[dict[str, Any], str] | None: ...

    def create(self, spec: dict[str, Any]) -> None: ...

    def replace(self, spec: dict[str, Any], resource_version: str) -> None: ...


def _micro_time(at: datetime) -> str:
    """A Lease's MicroTime, as client-go writes it."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Call :meth:`run` in a thread; :meth:`leading` says whether this replica may decide now
    and :attr:`term` counts the times it became leader (a new term: take a new fencing epoch)."""

    def __init__(self, leases: Leases, identity: str, timings: Timings = Timings(),
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.leases = leases
        self.identity = identity
        self.timings = timings
        self.clock = clock
        self.wall = wall
        self.term = 0
        self._renewed_at: float | None = None  # before the request that renewed: the conservative end
        self._observed: tuple[dict[str, Any], float] | None = None  # the record last seen, and when it changed

    def leading(self) -> bool:
        return self._renewed_at is not None and self.clock() - self._renewed_at < self.timings.renew_deadline_s

    def try_acquire_or_renew(self) -> bool:
        """One round: create the lease, renew ours, or take one that expired. True: leading."""
        now = self.clock()
        found = self.leases.read()
        stamp = _micro_time(self.wall())
        if found is None:
            spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.timings.duration_s),
                    "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}
            self._write(lambda: self.leases.create(spec))
            return self._renewed(now, spec)
        spec, version = found
        if self._observed is None or self._observed[0] != spec:
            self._observed = (spec, now)
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or self.timings.duration_s
        if holder and holder != self.identity and now < self._observed[1] + duration:
            return False
        mine = {**spec, "holderIdentity": self.identity, "leaseDurationSeconds": int(self.timings.duration_s),
                "renewTime": stamp}
        if holder != self.identity:
            mine |= {"acquireTime": stamp, "leaseTransitions": (spec.get("leaseTransitions") or 0) + 1}
        self._write(lambda: self.leases.replace(mine, version))
        return self._renewed(now, mine)

    def _write(self, write: Callable[[], None]) -> None:
        try:
            write()
        except LeaseConflict:
            self._observed = None  # read it again next round
            raise

    def _renewed(self, now: float, spec: dict[str, Any]) -> bool:
        if not self.leading():
            self.term += 1
            log.info("%s leads (term %d)", self.identity, self.term)
        self._renewed_at = now
        self._observed = (spec, now)
        return True

    def release(self) -> None:
        """Give the lease up (holder empty, one second left), as client-go's ReleaseOnCancel
        does, so that another replica takes over at once rather than after the duration."""
        if not self.leading():
            return
        self._renewed_at = None
        found = self.leases.read()
        if found is None or found[0].get("holderIdentity") != self.identity:
            return
        spec, version = found
        stamp = _micro_time(self.wall())
        self.leases.replace({**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": stamp,
                             "acquireTime": stamp}, version)
        log.info("%s released the lease", self.identity)

    def run(self, stop: threading.Event) -> None:
        """Try or renew every ``retry_s`` until ``stop``; then release the lease if held."""
        led = False  # as of the last round: a pause ends leadership without any round noticing
        while not stop.is_set():
            try:
                self.try_acquire_or_renew()
            except LeaseConflict:
                pass
            except Exception as exc:  # the API server away: leadership lapses at the renew deadline
                log.warning("%s: %s: %s; the admission loop runs only on the replica that holds it "
                            "(serve --no-leader-elect for a single one)", self.leases, type(exc).__name__, exc)
            if led and not self.leading():
                log.warning("%s stopped leading: the lease was not renewed within %.0f s",
                            self.identity, self.timings.renew_deadline_s)
            led = self.leading()
            stop.wait(self.timings.retry_s)
        try:
            self.release()
        except Exception as exc:  # others then take over when the lease expires
            log.warning("lease not released: %s: %s", type(exc).__name__, exc)
