"""Where the control plane keeps the latest layout each node agent reported.

A small interface, so that the live service can put it in its database later; the in-memory
store here is what tests and a single replica use.
"""

from __future__ import annotations

import threading
from typing import Protocol

from mig.report import NodeReport


class LayoutStore(Protocol):
    def put(self, report: NodeReport) -> None: ...

    def get(self, node: str) -> NodeReport | None: ...

    def nodes(self) -> list[str]: ...


class MemoryLayoutStore:
    """The latest report per node, in memory; safe to use from several request threads."""

    def __init__(self) -> None:
        self._reports: dict[str, NodeReport] = {}
        self._lock = threading.Lock()

    def put(self, report: NodeReport) -> None:
        with self._lock:
            self._reports[report.node] = report

    def get(self, node: str) -> NodeReport | None:
        with self._lock:
            return self._reports.get(node)

    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._reports)
