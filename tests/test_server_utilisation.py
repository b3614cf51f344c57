"""Idle GPU notebooks and cpu right-sizing: the decisions on hand-made series, then the queries
against a real Prometheus scraping an exporter whose values the test controls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from slotwise.server.utilisation import (
    Series,
    cpu_usage,
    gpu_utilisation,
    idle_pods,
    pod_of,
    quantile,
    recommend_cpu,
)
from tests.prometheus_server import wait_for

pytest_plugins = ["tests.prometheus_server"]

WINDOW = timedelta(minutes=30)


def gpu(pod: str, values: list[float], *, every: float = 60.0, start: float = 0.0, gpu: str = "0") -> Series:
    return Series({"namespace": "team-a", "pod": pod, "gpu": gpu, "Hostname": "n1"},
                  tuple((start + i * every, v) for i, v in enumerate(values)))


# Decisions ------------------------------------------------------------------------------------
def test_a_notebook_idle_for_the_whole_window_is_flagged():
    idle = idle_pods([gpu("nb-idle", [0, 2, 9, 0] + [1] * 27)], WINDOW)
    assert [(p.pod, round(p.utilisation, 2)) for p in idle] == [("nb-idle", 1.23)]


def test_one_busy_gpu_keeps_a_pod_from_being_idle():
    assert idle_pods([gpu("nb", [0] * 31), gpu("nb", [60] * 31, gpu="1")], WINDOW) == []


def test_a_short_burst_above_the_threshold_on_average_keeps_it():
    assert idle_pods([gpu("nb", [0] * 28 + [100, 100, 100])], WINDOW) == []


def test_a_notebook_observed_for_part_of_the_window_is_not_judged():
    assert idle_pods([gpu("nb-new", [0] * 10)], WINDOW) == []
    assert idle_pods([gpu("nb-new", [0] * 28)], WINDOW, min_coverage=0.9) != []


def test_the_pod_comes_from_exported_labels_when_prometheus_renamed_them():
    assert pod_of({"namespace": "gpu-operator", "pod": "dcgm-exporter-x",
                   "exported_namespace": "team-a", "exported_pod": "nb"}) == ("team-a", "nb")
    assert pod_of({"namespace": "team-a", "pod": "nb"}) == ("team-a", "nb")


def test_nearest_rank_quantile_returns_an_observed_value():
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.95) == 95.0 and quantile(values, 0.5) == 50.0 and quantile([3.0], 0.95) == 3.0


def test_cpu_request_is_the_p95_plus_headroom_as_a_kubernetes_quantity():
    usage = [0.1] * 90 + [0.3] * 6 + [2.0] * 4  # p95 is 0.3: the four spikes do not set the request
    series = {"namespace": "team-a", "pod": "trainer", "container": "main"}
    sidecar = {**series, "container": "proxy"}
    big = {**series, "container": "loader"}
    got = recommend_cpu([Series(series, tuple(enumerate(usage))), Series(sidecar, ((0, 0.0001),)),
                         Series(big, ((0, 2.5), (1, float("nan"))))])
    assert [(r.container, r.request) for r in got] == [("loader", "3"), ("main", "360m"), ("proxy", "10m")]
    assert recommend_cpu([Series(series, tuple(enumerate(usage)))], headroom=0.0)[0].request == "300m"


# Against a real Prometheus --------------------------------------------------------------------
class Exporter:
    """GPU utilisation gauges and cpu counters growing at set rates, computed at scrape time."""

    def __init__(self) -> None:
        self.gpu: dict[tuple[str, str, str], float] = {}
        self.cpu_rate: dict[tuple[str, str, str], float] = {}
        self.started = time.time()
        self.lock = threading.Lock()

    def collect(self):
        now = time.time()
        util = GaugeMetricFamily("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).",
                                 labels=["Hostname", "gpu", "namespace", "pod"])
        cpu = CounterMetricFamily("container_cpu_usage_seconds_total", "Cumulative cpu time consumed.",
                                  labels=["namespace", "pod", "container"])
        with self.lock:
            for (namespace, pod, index), value in self.gpu.items():
                util.add_metric(["node-1", index, namespace, pod], value)
            for (namespace, pod, container), rate in self.cpu_rate.items():
                cpu.add_metric([namespace, pod, container], rate * (now - self.started))
        return [util, cpu]


@pytest.fixture
def exporter() -> Iterator[tuple[Exporter, str]]:
    values = Exporter()
    registry = CollectorRegistry()
    registry.register(values)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield values, f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_idle_notebooks_and_cpu_requests_from_a_real_prometheus(prometheus, exporter):
    values, target = exporter
    values.gpu.update({("team-a", "nb-idle", "0"): 1.0, ("team-a", "nb-busy", "0"): 2.0,
                       ("team-a", "nb-busy", "1"): 80.0, ("team-a", "trainer", "0"): 0.0})
    values.cpu_rate.update({("team-a", "trainer", "main"): 0.5, ("team-a", "trainer", "proxy"): 0.002,
                            ("team-a", "trainer", ""): 0.502,  # cAdvisor's pod-level cgroup
                            ("team-a", "trainer", "POD"): 0.001})
    prom = PrometheusConnect(prometheus([target]))
    window = timedelta(seconds=6)

    idle = []

    def some_idle() -> bool:
        # The answer at the first moment one is idle: later, nb-new would have a full window too.
        idle[:] = idle_pods(gpu_utilisation(prom, window, selector='pod=~"nb-.*"', step="1s"), window)
        return bool(idle)

    wait_for(lambda: bool(gpu_utilisation(prom, window, step="1s")), 20, "the first scrape")
    with values.lock:  # arrives late: must not be judged on a partial window
        values.gpu["team-a", "nb-new", "0"] = 0.0
    wait_for(some_idle, 20, "a full window of samples")

    assert [(p.namespace, p.pod, p.utilisation) for p in idle] == [("team-a", "nb-idle", 1.0)]
    recommended = {r.container: r for r in recommend_cpu(cpu_usage(prom, window, rate_window="3s", step="1s"))}
    assert set(recommended) == {"main", "proxy"}
    # Scrape timing jitter moves rate() a little; summing the pod-level series would double it.
    assert recommended["main"].observed == pytest.approx(0.5, rel=0.1)
    assert recommended["main"].millicores == pytest.approx(600, rel=0.1)
    assert recommended["proxy"].request == "10m"
