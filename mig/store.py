"""Where the control plane keeps the latest layout each node agent reported, and the fleet those
layouts describe.

A small interface: the live service keeps the reports in its database
(``slotwise.server.mig_layouts``), shared by its replicas; the in-memory store here is for
tests and for what runs without a database.
"""

from __future__ import annotations

import threading
from typing import Protocol

from mig.report import NodeReport
from mig.slots import Fleet


class LayoutStore(Protocol):
    def put(self, report: NodeReport) -> None: ...

    def get(self, node: str) -> NodeReport | None: ...

    def nodes(self) -> list[str]: ...

    def reports(self) -> list[NodeReport]: ...

    @property
    def version(self) -> int:
        """Changes whenever a stored report does."""
        ...


class MemoryLayoutStore:
    """The latest report per node, in memory; safe to use from several request threads."""

    def __init__(self) -> None:
        self._reports: dict[str, NodeReport] = {}
        self._version = 0
        self._lock = threading.Lock()

    def put(self, report: NodeReport) -> None:
        with self._lock:
            # Agents report every few seconds, mostly the same layout: only a change counts.
            if self._reports.get(report.node) != report:
                self._reports[report.node] = report
                self._version += 1

    def get(self, node: str) -> NodeReport | None:
        with self._lock:
            return self._reports.get(node)

    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._reports)

    def reports(self) -> list[NodeReport]:
        with self._lock:
            return [self._reports[n] for n in sorted(self._reports)]

    @property
    def version(self) -> int:
        return self._version


class ReportedFleet:
    """The fleet the latest reports describe, rebuilt only when a report changes; call it for the
    current one. Layouts are fixed: the GPU Operator's mig-manager creates instances and the
    device plugin advertises them, so a pod can only take an idle instance of its profile, and
    changing a layout is a repartition, which is an admin's decision (``slotwise mig plan``)."""

    def __init__(self, store: LayoutStore):
        self.store = store
        self._built: tuple[int, Fleet] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Fleet:
        with self._lock:
            # The version before the reports: a report landing in between costs one more
            # rebuild, never a fleet older than its version.
            version = self.store.version
            if self._built is None or self._built[0] != version:
                fleet = Fleet({r.node: r.layouts() for r in self.store.reports()}, fixed=True)
                self._built = (version, fleet)
            return self._built[1]
