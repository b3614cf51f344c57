"""What pods really use, read from Prometheus: idle GPU notebooks and CPU request right-sizing.

Thin query functions fetch series over a window; pure decision functions take those series, so
that the decisions are tested without a Prometheus and the queries against a real one.

GPU utilisation is the DCGM exporter's ``DCGM_FI_DEV_GPU_UTIL`` (percent, per GPU), with
``namespace``/``pod`` labels when its pod mapping is on; CPU usage is cAdvisor's
``container_cpu_usage_seconds_total`` counter, read as a rate.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from prometheus_api_client import PrometheusConnect

from scheduler.model.resources import CPU, format_amount

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
CPU_USAGE = "container_cpu_usage_seconds_total"


@dataclass(frozen=True, slots=True)
class Series:
    labels: Mapping[str, str]
    samples: tuple[tuple[float, float], ...]  # (unix time, value), oldest first


@dataclass(frozen=True, slots=True)
class IdlePod:
    namespace: str
    pod: str
    utilisation: float  # mean percent over the window, of the pod's busiest GPU


@dataclass(frozen=True, slots=True)
class CpuRecommendation:
    namespace: str
    pod: str
    container: str
    observed: float  # the quantile of usage, in cores
    millicores: int
    request: str  # the Kubernetes quantity to set


# Queries ---------------------------------------------------------------------------------------
def _range(prom: PrometheusConnect, query: str, window: timedelta, step: str, now: datetime | None) -> list[Series]:
    end = now or datetime.now(timezone.utc)
    reply = prom.custom_query_range(query, start_time=end - window, end_time=end, step=step)
    return [Series(dict(r["metric"]), tuple((float(t), float(v)) for t, v in r["values"])) for r in reply]


def gpu_utilisation(prom: PrometheusConnect, window: timedelta = timedelta(minutes=30), *, selector: str = "",
                    step: str = "60s", now: datetime | None = None) -> list[Series]:
    """Per-GPU utilisation of pods matching ``selector`` (PromQL matchers, e.g. ``namespace=~"team-.*"``)."""
    return _range(prom, f"{GPU_UTIL}{{{selector}}}", window, step, now)


def cpu_usage(prom: PrometheusConnect, window: timedelta = timedelta(days=7), *, selector: str = "",
              rate_window: str = "5m", step: str = "5m", now: datetime | None = None) -> list[Series]:
    """Per-container cpu use in cores. cAdvisor's pod-level (no container) and pause (``POD``)
    series are left out: they would double-count or recommend for the sandbox."""
    matchers = ",".join(m for m in ('container!=""', 'container!="POD"', selector) if m)
    return _range(prom, f"rate({CPU_USAGE}{{{matchers}}}[{rate_window}])", window, step, now)


# Decisions -------------------------------------------------------------------------------------
def pod_of(labels: Mapping[str, str]) -> tuple[str, str]:
    """The pod a series belongs to. Prometheus renames an exporter's ``namespace``/``pod`` to
    ``exported_*`` when the scrape target carries its own (no ``honor_labels``)."""
    return (labels.get("exported_namespace", labels.get("namespace", "")),
            labels.get("exported_pod", labels.get("pod", "")))


def idle_pods(series: Iterable[Series], window: timedelta, *, threshold: float = 5.0,
              min_coverage: float = 0.9) -> list[IdlePod]:
    """Pods whose every GPU averaged below ``threshold`` percent over the window. A pod observed
    for less than ``min_coverage`` of the window is never idle: a notebook started a minute ago
    has not had the chance to work."""
    by_pod: dict[tuple[str, str], list[Series]] = defaultdict(list)
    for s in series:
        if s.samples and all(pod_of(s.labels)):
            by_pod[pod_of(s.labels)].append(s)
    idle = []
    for (namespace, pod), gpus in sorted(by_pod.items()):
        start = min(s.samples[0][0] for s in gpus)
        end = max(s.samples[-1][0] for s in gpus)
        if end - start < min_coverage * window.total_seconds():
            continue
        busiest = max(sum(v for _, v in s.samples) / len(s.samples) for s in gpus)
        if busiest < threshold:
            idle.append(IdlePod(namespace, pod, busiest))
    return idle


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile: always a value that was observed."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def recommend_cpu(series: Iterable[Series], *, q: float = 0.95, headroom: float = 0.2,
                  minimum: int = 10) -> list[CpuRecommendation]:
    """A cpu request per container: the ``q`` quantile of its usage plus ``headroom``, rounded
    up to whole millicores, at least ``minimum`` millicores."""
    out = []
    for s in series:
        values = [v for _, v in s.samples if math.isfinite(v)]
        if not values:
            continue
        observed = quantile(values, q)
        # Rounded first so that float noise (360.00000000000006) does not add a millicore.
        millicores = max(math.ceil(round(observed * (1 + headroom) * 1000, 6)), minimum)
        namespace, pod = pod_of(s.labels)
        out.append(CpuRecommendation(namespace, pod, s.labels.get("container", ""), observed, millicores,
                                     format_amount(CPU, millicores)))
    return sorted(out, key=lambda r: (r.namespace, r.pod, r.container))
