"""The cluster cache: nodes and pods kept current by list-and-watch, and the Snapshot built from them.

The extender reads only this cache, never the API server, so a scheduling cycle costs no API call.
Changes are applied to the snapshot in place: pods assigned and released, a node whose labels or
taints change replaced. What keeps a busy cluster from rebuilding 5,000 nodes and every pod on
them per event: pods come and go all the time, and taints do too (cordons, and the node lifecycle
controller's not-ready and unreachable taints). A node added, removed or resized drops the
snapshot, built whole on the next read. One lock guards both the dicts and the snapshot: readers
hold it for one extender verb.

Pending pods held by a scheduling gate also keep their API object (the model drops gates and
creation time), so the admission loop reads them here rather than listing pods every cycle; only
those, since gated pods are few and whole objects are large.

PodGroups (scheduler-plugins' and Volcano's) are followed the same way where their CRD is
installed; where it is not (404) or RBAC forbids it (403) the cache says so once, keeps working
without that kind and asks again at each resync. Readiness waits for nodes and pods only.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from functools import partial
from typing import Any

from scheduler.gang.groups import SCHEDULER_PLUGINS, VOLCANO, PodGroup, PodGroups
from scheduler.model.cluster import Node, Pod
from scheduler.model.k8s_json import ModelError, finished, node_from_k8s, pod_from_k8s
from scheduler.model.snapshot import Snapshot
from slotwise.server.gpu_shares import in_share_group, is_reservation, without_its_gpu
from slotwise.server.kube import (
    CUSTOM_LISTERS,
    LISTERS,
    SCHEDULER_PLUGINS_POD_GROUPS,
    VOLCANO_POD_GROUPS,
    Expired,
    Kube,
    Unavailable,
)

log = logging.getLogger(__name__)

def _gates(obj: Mapping[str, Any]) -> list[Any]:
    spec = obj.get("spec")
    return (spec.get("schedulingGates") or []) if isinstance(spec, Mapping) else []


def _read(kind: str, obj: Mapping[str, Any]) -> Node | Pod | None:
    """The model of one API object; None for a finished pod, or (with a warning) one the model
    cannot read: one bad object must not stop the cache."""
    try:
        if kind == "nodes":
            return node_from_k8s(obj)
        if finished(obj):
            return None
        return pod_from_k8s(obj)
    except ModelError as exc:
        log.warning("ignoring %s %s: %s", kind, obj.get("metadata", {}).get("name"), exc)
        return None


#: The gang convention that names each PodGroup kind.
_CONVENTIONS = {SCHEDULER_PLUGINS_POD_GROUPS: SCHEDULER_PLUGINS, VOLCANO_POD_GROUPS: VOLCANO}


def _count(value: Any) -> int | None:
    """A positive integer field, or None: unset, 0 (the schedulers' "use the default") or malformed."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _meta_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def _pod_group(obj: Mapping[str, Any]) -> PodGroup:
    """``spec.minMember``, and ``spec.scheduleTimeoutSeconds``, which only scheduler-plugins' has."""
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    timeout = _count(spec.get("scheduleTimeoutSeconds"))
    return PodGroup(_count(spec.get("minMember")), float(timeout) if timeout is not None else None)


#: One listed object as the cache keeps it: a PodGroup by its key; a node or pod as its model,
#: with the API object beside it only for a gated pod (the admission loop patches against it).
Listed = tuple[str, PodGroup] | tuple[Mapping[str, Any] | None, Node | Pod | None]


def _listed(kind: str, obj: Mapping[str, Any]) -> Listed:
    """What the cache keeps of an object a list or a watch event brings. A list reads each as its
    page arrives, so that a resync never holds every pod as parsed JSON (5,000 nodes, 30,000 pods:
    a 1,509 MiB peak that way, 540 MiB page by page)."""
    if kind in CUSTOM_LISTERS:
        return _meta_key(obj), _pod_group(obj)
    return (obj if _gates(obj) else None), _read(kind, obj)


class _PodIndex:
    """The cached pods, by namespace/name as the snapshot keys them, and the lookups kept beside."""

    def __init__(self) -> None:
        self.pods: dict[str, Pod] = {}
        self.by_uid: dict[str, str] = {}
        self.gated: dict[str, Mapping[str, Any]] = {}  # pod key -> API object, for pending pods with scheduling gates
        #: Pods that take part in GPU share groups: the admission loop reads the groups every cycle,
        #: from these rather than from every pod.
        self.shares: dict[str, Pod] = {}

    def add(self, pod: Pod, gated_obj: Mapping[str, Any] | None) -> None:
        self.pods[pod.key] = pod
        if pod.uid:
            self.by_uid[pod.uid] = pod.key
        if gated_obj is not None:  # gated pods are never bound
            self.gated[pod.key] = gated_obj
        if in_share_group(pod):
            self.shares[pod.key] = pod

    def forget(self, key: str) -> Pod | None:
        old = self.pods.pop(key, None)
        self.gated.pop(key, None)  # stored again only if the new version is still gated
        self.shares.pop(key, None)
        if old is not None:
            self.by_uid.pop(old.uid, None)
        return old


def _node_change(before: Node | None, after: Node | None) -> tuple[str, str]:
    """Why a node change drops the snapshot: a reason for the metric's label, and for the log the
    node and the fields that changed."""
    if before is None or after is None:
        node = after or before
        assert node is not None
        return ("node added" if before is None else "node removed"), node.name
    changed = [f.name for f in fields(Node) if getattr(before, f.name) != getattr(after, f.name)]
    return "node resized", f"{after.name} ({', '.join(changed)})"


def _rv(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata")
    return meta.get("resourceVersion") if isinstance(meta, Mapping) else None


class ClusterCache:
    def __init__(self, kube: Kube | None = None, *, resync_s: float = 300.0, watch_timeout_s: int = 60,
                 retry_s: float = 1.0):
        """``kube`` None gives a cache fed only through :meth:`replace` and :meth:`apply`."""
        self.kube = kube
        self.resync_s = resync_s
        self.watch_timeout_s = watch_timeout_s
        self.retry_s = retry_s
        self._lock = threading.RLock()
        self._nodes: dict[str, Node] = {}
        self._index = _PodIndex()
        self._snap: Snapshot | None = None
        self._stale = ("first read", "")  # why the snapshot must be built: a metric label, and details to log
        self._freed = 0  # changes that may have made room: read by :attr:`freed`
        #: Snapshot rebuilds by reason (the labels of ``on_rebuild``), and what they cost.
        self.rebuilds: Counter[str] = Counter()
        #: Called after each rebuild with its reason and seconds (the service's metrics).
        self.on_rebuild: Callable[[str, float], None] | None = None
        self._groups: dict[str, dict[str, PodGroup]] = {kind: {} for kind in CUSTOM_LISTERS}  # by namespace/name
        self._synced: set[str] = set()
        self._absent: set[str] = set()  # custom kinds whose CRD is not installed (or not readable)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        #: Set when a gated pod arrives: the admission loop decides it without waiting out its interval.
        self.gated_arrived = threading.Event()

    # Feeding ------------------------------------------------------------------------------------
    def replace(self, kind: str, items: list[Mapping[str, Any]]) -> None:
        """A fresh list of ``kind`` (a key of ``LISTERS`` or ``CUSTOM_LISTERS``) replaces what the cache held."""
        self._replace(kind, [_listed(kind, obj) for obj in items])

    def _replace(self, kind: str, read: list[Listed]) -> None:
        """What :meth:`replace` does with the objects read (:func:`_listed`).

        They are compared with what the cache holds before the lock is taken (only this kind's
        own watch thread changes its dicts), and the changes reach the snapshot as watch events
        do: the resync every few minutes, which mostly changes nothing, no longer holds the
        extender up for reading and accounting the whole cluster again (seconds at 5,000 nodes
        and 20,000 pods).
        """
        if kind in CUSTOM_LISTERS:
            groups = dict(read)
            with self._lock:
                self._groups[kind] = groups  # type: ignore[assignment]
                self._absent.discard(kind)
                self._synced.add(kind)
            return
        if kind == "nodes":
            nodes = {node.name: node for _, node in read if isinstance(node, Node)}
            changed = [(self._nodes.get(name), nodes.get(name)) for name in self._nodes.keys() | nodes.keys()
                       if self._nodes.get(name) != nodes.get(name)]
            with self._lock:
                self._nodes = nodes
                for before, after in changed:
                    self._node_changed(before, after)
                self._synced.add(kind)
            return
        index = _PodIndex()
        for obj, pod in read:
            if isinstance(pod, Pod):
                index.add(pod, obj)  # type: ignore[arg-type]
        pods = index.pods
        gone = [key for key, old in self._index.pods.items() if pods.get(key) != old]
        came = [new for key, new in pods.items() if self._index.pods.get(key) != new]
        with self._lock:
            self._freed += any(self._index.pods[key].node_name for key in gone)
            self._index = index
            if self._snap is not None:
                for key in gone:  # released first, so that a pod that moved fits again
                    if key in self._snap.assignments:
                        self._snap.release(key)
                for pod in sorted(came, key=lambda p: not p.gpu_indices):
                    if self._snap is None:
                        break  # a conflict dropped it: the next reader rebuilds it whole
                    self._account(self._snap, pod)
            self._synced.add(kind)

    def apply(self, kind: str, event: str, obj: Mapping[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED (others are ignored)."""
        if event not in ("ADDED", "MODIFIED", "DELETED"):
            return
        if kind in CUSTOM_LISTERS:
            with self._lock:
                self._groups[kind].pop(_meta_key(obj), None)
                if event != "DELETED":
                    self._groups[kind][_meta_key(obj)] = _pod_group(obj)
            return
        gated_obj, model = _listed(kind, obj) if event != "DELETED" else (None, None)
        with self._lock:
            if kind == "nodes":
                name = obj.get("metadata", {}).get("name")
                before = self._nodes.pop(name, None)
                if isinstance(model, Node):
                    self._nodes[model.name] = model
                # Most node updates are status heartbeats that change nothing the snapshot holds.
                if self._nodes.get(name) != before:
                    self._node_changed(before, self._nodes.get(name))
                return
            was_gated = _meta_key(obj) in self._index.gated
            old = self._index.forget(_meta_key(obj))
            new = model if isinstance(model, Pod) else None
            self._freed += old is not None and old.node_name is not None and old != new
            if new is not None:
                self._index.add(new, gated_obj)  # type: ignore[arg-type]
                if new.key in self._index.gated and not was_gated:  # not the loop's own condition updates
                    self.gated_arrived.set()
            if self._snap is not None:
                if old is not None and old.key in self._snap.assignments:
                    self._snap.release(old.key)
                if new is not None:
                    self._account(self._snap, new)

    def _account(self, snap: Snapshot, pod: Pod) -> None:
        if pod.node_name is None or pod.node_name not in snap.index:
            return  # pending, or on a node the watch has not delivered yet
        if is_reservation(pod):
            pod = without_its_gpu(pod)
        try:
            snap.assign(pod, snap.index[pod.node_name], pod.gpu_indices or None)
        except ValueError as exc:  # the API server's truth wins; our arithmetic only warns
            if snap is self._snap and self._squatted(snap, pod):
                # Its GPU slots went to a pod that named none (arrived first): rebuild, slots named first.
                self._invalidate("GPU slots taken", f"{pod.key} names GPU slots {list(pod.gpu_indices)} "
                                 f"on {pod.node_name}: {exc}")
            else:
                log.warning("cannot account %s on %s: %s", pod.key, pod.node_name, exc)

    def _node_changed(self, before: Node | None, after: Node | None) -> None:
        self._freed += 1  # a node added, or relabelled, untainted, resized: room for pods it could not take
        if self._snap is not None and before is not None and after is not None \
                and before.allocatable == after.allocatable:
            self._snap.replace_node(after)
        else:
            self._invalidate(*_node_change(before, after))

    def _invalidate(self, reason: str, details: str) -> None:
        """Drop the snapshot: the next reader builds it whole. The first reason since the last
        build is the one reported."""
        if self._snap is not None:
            self._snap, self._stale = None, (reason, details)

    @staticmethod
    def _squatted(snap: Snapshot, pod: Pod) -> bool:
        """Whether a pod that named no GPU slots holds one that ``pod`` names."""
        node, named = snap.index[pod.node_name], set(pod.gpu_indices)  # type: ignore[index]
        return bool(named) and any(a.node == node and not a.pod.gpu_indices and named & set(a.gpus)
                                   for a in snap.assignments.values())

    # Reading ------------------------------------------------------------------------------------
    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """The current snapshot, held still (under the lock) for the caller's block."""
        with self._lock:
            if self._snap is None:
                started = time.perf_counter()
                # Nodes by name: where scores tie, the first wins, so the order is the tie-break; by
                # name it is the same whatever order the watch brought them in, and the same as a
                # simulation of the cluster's nodes (simulator.replay) gets.
                snap = Snapshot(sorted(self._nodes.values(), key=lambda n: n.name))
                # Pods that name their GPU slots first: the others take whatever slots are left.
                for pod in sorted(self._index.pods.values(), key=lambda p: not p.gpu_indices):
                    self._account(snap, pod)
                self._snap = snap
                self._rebuilt(time.perf_counter() - started)
            yield self._snap

    def _rebuilt(self, seconds: float) -> None:
        """Each rebuild stalls every extender call for its length (a few hundred ms at 5,000 nodes
        and 20,000 pods): counted, timed and logged with its cause, so that one recurring is seen."""
        reason, details = self._stale
        self.rebuilds[reason] += 1
        log.info("snapshot built in %.0f ms (%d nodes, %d pods): %s%s", 1000 * seconds, len(self._nodes),
                 len(self._index.pods), reason, f": {details}" if details else "")
        if self.on_rebuild is not None:
            self.on_rebuild(reason, seconds)

    @property
    def freed(self) -> int:
        """A count of the changes that may have made room in the snapshot since the cache started:
        a bound pod gone or changed, a node added or changed. Read it while holding
        :meth:`snapshot`: a pod that fit nowhere in that snapshot fits nowhere until it grows
        (pods placed meanwhile only take room)."""
        return self._freed

    def pods(self) -> list[Pod]:
        """Every pod not finished, bound or not (a pod on a node the snapshot lacks included)."""
        with self._lock:
            return list(self._index.pods.values())

    def share_pods(self) -> list[Pod]:
        """The pods that take part in GPU share groups (shares and reservations), bound or not."""
        with self._lock:
            return list(self._index.shares.values())

    @property
    def pod_count(self) -> int:
        """How many pods :meth:`pods` would list, without listing them."""
        return len(self._index.pods)

    def gated(self, gate: str) -> list[tuple[Pod, Mapping[str, Any]]]:
        """Pods not bound to a node and held by scheduling gate ``gate``, with their API objects.
        Objects are kept for any gate and the caller names its own: the module that names the
        admission gate depends on this one."""
        with self._lock:
            return [(self._index.pods[key], obj) for key, obj in self._index.gated.items()
                    if any(isinstance(g, Mapping) and g.get("name") == gate for g in _gates(obj))]

    def pod_key(self, uid: str) -> str | None:
        with self._lock:
            return self._index.by_uid.get(uid)

    def pod_groups(self) -> PodGroups:
        """Every PodGroup the cache holds, by gang convention and ``namespace/name``."""
        with self._lock:
            return {(_CONVENTIONS[kind], key): group for kind, groups in self._groups.items()
                    for key, group in groups.items()}

    @property
    def synced(self) -> bool:
        """Nodes and pods listed: what readiness waits for."""
        return self._synced >= set(LISTERS)

    @property
    def pod_groups_known(self) -> bool:
        """Each PodGroup kind listed or found missing (a cache fed by hand holds what it was given):
        before that, a gang's minimum may not be known yet."""
        return self.kube is None or self._synced | self._absent >= set(CUSTOM_LISTERS)

    # Following the API server -------------------------------------------------------------------
    def start(self) -> None:
        if self.kube is None:
            raise RuntimeError("a cache without a Kube adapter cannot follow the API server")
        self._stop.clear()
        self._threads = [threading.Thread(target=self._follow, args=(kind,), daemon=True, name=f"watch-{kind}")
                         for kind in (*LISTERS, *CUSTOM_LISTERS)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def _unavailable(self, kind: str, exc: Unavailable) -> None:
        """Work on without ``kind``: say so once (not at every resync), and drop what it held."""
        with self._lock:
            first = kind not in self._absent
            self._absent.add(kind)
            self._synced.discard(kind)
            self._groups[kind] = {}
        if first:
            log.warning("cannot list %s (%s): gangs named by them use their pods' own annotations; "
                        "checked again every %g s", kind, exc, self.resync_s)

    def _follow(self, kind: str) -> None:
        """List, then watch from the list's resourceVersion; list again on 410 Gone, on any
        error (after ``retry_s``) and every ``resync_s`` so that a missed event cannot last."""
        assert self.kube is not None
        while not self._stop.is_set():
            try:
                listing = self.kube.list(kind, partial(_listed, kind))
                self._replace(kind, listing.items)
                # What a list brings lives until the next one: out of the cyclic collector's scans.
                # A full collection walks every cached object (about 150,000 at 5,000 nodes, 150 ms on
                # two cores), and one landing in a scheduling cycle is an extender call that slow.
                gc.freeze()
                rv = listing.resource_version
                resync_at = time.monotonic() + self.resync_s
                while not self._stop.is_set() and time.monotonic() < resync_at:
                    for event, obj in self.kube.watch(kind, rv, self.watch_timeout_s):
                        rv = _rv(obj) or rv
                        self.apply(kind, event, obj)
                        if self._stop.is_set():
                            return
            except Expired as exc:
                log.info("%s watch expired (%s); listing again", kind, exc)
            except Unavailable as exc:
                self._unavailable(kind, exc)
                self._stop.wait(self.resync_s)
            except Exception:  # noqa: BLE001 - the API server being away must not kill the cache
                log.exception("%s list/watch failed; retrying in %.1fs", kind, self.retry_s)
                self._stop.wait(self.retry_s)
