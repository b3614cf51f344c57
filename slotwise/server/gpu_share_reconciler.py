"""Keeps GPU share groups as the cluster's objects say they are (slotwise.server.gpu_shares):
writes each share pod's ConfigMap once its reservation has reported its device, deletes
reservations no share uses any more, and reports drift (a share whose reservation is gone or
elsewhere) as a log line, a Warning event on the pod and a metric. Every effect is idempotent,
so a restart redoes what was not done and nothing twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Set

from kubernetes.client import ApiException

from scheduler.model.cluster import Pod
from slotwise.server.gpu_shares import IDLE_RESERVATION_S, env_config_map, group_state
from slotwise.server.kube import Kube
from slotwise.server.metrics import ServiceMetrics

log = logging.getLogger(__name__)

DRIFT_REASON = "SlotwiseGpuDrift"


class ShareReconciler:
    def __init__(self, kube: Kube, metrics: ServiceMetrics | None = None, clock: Callable[[], float] = time.time):
        self.kube = kube
        self.metrics = metrics
        self.clock = clock
        self._written: set[str] = set()  # ConfigMaps known to exist (namespace/name)
        self._idle_since: dict[str, float] = {}
        self._told: set[tuple[str, str]] = set()  # drift already reported (pod key, why)

    def reconcile(self, pods: Iterable[Pod], used_now: Set[str] = frozenset()) -> None:
        """One pass over the cached pods; ``used_now``: groups this cycle's decisions use (their
        pods' annotations may not be in the cache yet)."""
        state = group_state(pods)
        due = {f"{pod.namespace}/{name}": (pod, name, device) for pod, name, device in state.env_due}
        self._written &= due.keys()
        for key, (pod, name, device) in due.items():
            if key not in self._written and self._write_env(pod, name, device):
                self._written.add(key)

        now = self.clock()
        idle = {r.name: r for r in state.idle if r.name not in used_now}
        self._idle_since = {name: self._idle_since.get(name, now) for name in idle}
        for name, r in idle.items():
            if now - self._idle_since[name] >= IDLE_RESERVATION_S:
                try:
                    self.kube.delete_pod(r.namespace, r.name)
                    log.info("deleted GPU reservation %s on %s: no share uses it", r.name, r.node)
                except ApiException as exc:
                    if exc.status != 404:
                        log.warning("deleting GPU reservation %s failed: %s %s", r.name, exc.status, exc.reason)

        drift = {(pod.key, why): pod for pod, why in state.drift}
        for (key, why), pod in drift.items():
            if (key, why) in self._told:
                continue
            log.warning("GPU share drift: %s: %s", key, why)
            if self.metrics is not None:
                self.metrics.gpu_share_drift()
            try:
                self.kube.create_event(pod.namespace, pod.name, pod.uid, DRIFT_REASON,
                                       f"slotwise's view of this pod's GPU is not the node's: {why}", "Warning")
            except ApiException as exc:
                log.warning("event about %s failed: %s %s", key, exc.status, exc.reason)
        self._told = set(drift)

    def _write_env(self, pod: Pod, name: str, device: str) -> bool:
        """Whether the share's ConfigMap exists now (made, or there already: a restart)."""
        try:
            self.kube.create_config_map(pod.namespace, env_config_map(pod, name, device))
        except ApiException as exc:
            if exc.status == 409:
                return True
            log.warning("creating ConfigMap %s/%s failed: %s %s", pod.namespace, name, exc.status, exc.reason)
            return False
        return True
