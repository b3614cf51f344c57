"""Overflow spend as a Prometheus metric, for an alert when a project nears its burst budget
(for example ``slotwise_burst_budget_used_ratio > 0.8``)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Gauge


class BudgetGauge:
    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self._used = Gauge("slotwise_burst_budget_used_ratio",
                           "Share of the project's tightest burst budget (day or month) spent or reserved.",
                           ["pool"], registry=registry)

    def update(self, pool: str, left: float, limit: float) -> None:
        self._used.labels(pool=pool).set(1.0 - left / limit if limit > 0 else 1.0)
