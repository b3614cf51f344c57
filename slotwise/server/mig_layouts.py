"""The MIG layout reports kept in slotwise's database (a ``mig.store.LayoutStore``): every replica
sees the reports any of them received, and a restart loses none."""

from __future__ import annotations

import time
from collections.abc import Callable

from mig.report import NodeReport
from quota.store import Store

#: How long a replica trusts the layouts' version it last read: agents report every few seconds,
#: and the fleet is looked at on every MIG pod's extender call.
VERSION_TTL_S = 1.0


class StoredLayouts:
    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.clock = clock
        self._version: tuple[float, int] | None = None  # when read, and what

    def put(self, report: NodeReport) -> None:
        if self.store.put_layout(report.node, report.model_dump_json()):
            self._version = None  # this replica sees its own report at once

    def get(self, node: str) -> NodeReport | None:
        report = self.store.layout(node)
        return None if report is None else NodeReport.model_validate_json(report)

    def nodes(self) -> list[str]:
        return [node for node, _ in self.store.layouts()]

    def reports(self) -> list[NodeReport]:
        return [NodeReport.model_validate_json(report) for _, report in self.store.layouts()]

    @property
    def version(self) -> int:
        now = self.clock()
        if self._version is None or now - self._version[0] >= VERSION_TTL_S:
            self._version = (now, self.store.layouts_version())
        return self._version[1]
