"""The service's Prometheus metrics and the ``/metrics`` route that serves them.

Amounts are exported in the units Prometheus users expect: cpu in cores, GPUs in GPUs (quota
counts them in milli-GPU), memory in bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from threading import Lock

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from burst.metrics import BudgetGauge
from quota.ledger import Ledger
from quota.usage import pool_usage
from scheduler.model.resources import CPU, is_gpu_quota

VERBS = ("filter", "prioritize", "mutate", "validate", "admit")
#: 0.1 ms to 1 s: the extender's budget is milliseconds, the apiserver gives webhooks 1 s at p99.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_QUOTA_FIELDS = {
    "used": "What the pool's subtree holds now.",
    "guaranteed": "The pool's guarantee.",
    "borrowed": "What the pool holds above its guarantee, borrowed through its parent.",
    "lent": "Of the pool's guarantee, what other pools use now.",
}


def quota_value(resource: str, amount: int) -> float:
    """A ledger amount in the resource's natural unit (cores, GPUs, bytes)."""
    return amount / 1000 if resource == CPU or is_gpu_quota(resource) else float(amount)


class _ReplacedGauge:
    """A gauge whose label sets are replaced wholesale on each update, so that a pool, reason or
    profile that disappears stops being exported instead of keeping its last value."""

    def __init__(self, name: str, documentation: str, labels: list[str], registry: CollectorRegistry):
        self._gauge = Gauge(name, documentation, labels, registry=registry)
        self._keys: set[tuple[str, ...]] = set()
        self._lock = Lock()  # updates may come from the admission loop and request handlers at once

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        with self._lock:
            for key, value in values.items():
                self._gauge.labels(*key).set(value)
            for key in self._keys - values.keys():
                self._gauge.remove(*key)
            self._keys = set(values)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        # A registry of its own by default, so that two services (or tests) never collide.
        self.registry = registry if registry is not None else CollectorRegistry()
        self.budget = BudgetGauge(self.registry)
        self._quota = {field: _ReplacedGauge(f"slotwise_quota_{field}", doc, ["pool", "resource"], self.registry)
                       for field, doc in _QUOTA_FIELDS.items()}
        self._pending = _ReplacedGauge("slotwise_pending_pods", "Pods waiting for admission or placement, by reason.",
                                       ["reason"], self.registry)
        self._latency = Histogram("slotwise_decision_seconds", "Time to answer one extender or webhook call, or one "
                                  "admission decision.", ["verb"], buckets=LATENCY_BUCKETS, registry=self.registry)
        for verb in VERBS:  # exported from the start at zero, so that rate() has a series to start from
            self._latency.labels(verb=verb)
        self._burst = Gauge("slotwise_burst_spend_reserved", "Overflow spend reserved or spent in the current budget "
                            "period, in the budget's currency.", ["pool"], registry=self.registry)
        self._mig = _ReplacedGauge(
            "slotwise_mig_slices_free",
            "MIG instances of the profile that could be placed on free valid slots now, summed over GPUs, as the "
            "node agents last reported them: with mig-manager's fixed layouts, the idle instances of the profile. "
            "Each profile is counted on its own: instances of different profiles may compete for the same slots.",
            ["profile"], self.registry)
        self._gpu_drift = Counter(
            "slotwise_gpu_share_drift", "GPU shares found not where slotwise's model has them (their reservation "
            "gone or elsewhere), each reported once; alert on any increase.", registry=self.registry)
        self._rebuilds = Counter(
            "slotwise_snapshot_rebuilds", "Times the cluster snapshot was built whole, by what dropped it (node "
            "added, removed or resized, GPU slots taken): each stalls the extender for "
            "slotwise_snapshot_rebuild_seconds; more than a few an hour means something rewrites nodes.",
            ["reason"], registry=self.registry)
        self._rebuild_seconds = Histogram(
            "slotwise_snapshot_rebuild_seconds", "Time to build the cluster snapshot whole.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=self.registry)
        self.leader = Gauge("slotwise_leader", "1 while this replica holds the lease and runs the admission loop; "
                            "the sum over replicas should be 1.", registry=self.registry)

    def update_quota(self, ledger: Ledger) -> None:
        rows = pool_usage(ledger)
        for field, gauge in self._quota.items():
            gauge.replace({(r.pool, r.resource): quota_value(r.resource, getattr(r, field)) for r in rows})

    def set_pending(self, by_reason: Mapping[str, int]) -> None:
        self._pending.replace({(reason,): count for reason, count in by_reason.items()})

    def _verb(self, verb: str) -> Histogram:
        # A typo would otherwise create a new series nobody charts.
        if verb not in VERBS:
            raise ValueError(f"unknown verb {verb!r}; one of {', '.join(VERBS)}")
        return self._latency.labels(verb=verb)

    def observe(self, verb: str, seconds: float) -> None:
        self._verb(verb).observe(seconds)

    @contextmanager
    def timed(self, verb: str) -> Iterator[None]:
        """Times the block as one ``verb`` decision, also when it raises."""
        with self._verb(verb).time():
            yield

    def set_burst_spend(self, pool: str, reserved: float) -> None:
        self._burst.labels(pool=pool).set(reserved)

    def set_mig_free(self, by_profile: Mapping[str, int]) -> None:
        self._mig.replace({(profile,): count for profile, count in by_profile.items()})

    def gpu_share_drift(self) -> None:
        self._gpu_drift.inc()

    def snapshot_rebuilt(self, reason: str, seconds: float) -> None:
        self._rebuilds.labels(reason=reason).inc()
        self._rebuild_seconds.observe(seconds)


def metrics_router(metrics: ServiceMetrics, refresh: Callable[[], None] | None = None) -> APIRouter:
    """``GET /metrics``; ``refresh`` brings gauges read from elsewhere (quota) up to date first."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def scrape() -> Response:
        if refresh is not None:
            refresh()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
