"""The live path at scale: kube-scheduler alone beside kube-scheduler with slotwise, on a real
control plane, and the simulator held to what the live cluster does.

A kwok cluster (e2e/cluster.py: kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
kwok) is made from the openb GPU node list (``--nodes``: more nodes than the list replicate it),
and the openb default pods are created in one seeded order, at ``--rate`` pods/s or as fast as
``--creators`` clients can. Each configuration gets a fresh cluster, all in one run, so that the
ratios hold on a noisy machine:

- ``kube``: kube-scheduler alone, its default profile, no extender and no webhooks. Whole GPUs are
  ``nvidia.com/gpu``; GPU shares are a node-level extended resource (``slotwise.io/gpu-milli``,
  1000 per GPU), which cannot see whether one GPU has room: the shares each node got are packed
  onto the GPUs whole-GPU pods left (first-fit decreasing), and those that do not fit are counted
  as over-committed and left out of its allocation;
- ``default`` and ``fgd``: slotwise as deploy/ ships it (webhooks, extender, admission loop, client
  certificates) with that ``serve --profile``.

For each: pods bound per second (sustained: between 10% and 90% of the pods that bound), time
from creation to binding (p50, p99; creation is when the API server answered the create, binding
when the benchmark's watch first saw ``spec.nodeName``; p50 "gated": until it first saw the pod
without a scheduling gate, so the rest is kube-scheduler's), the GPU allocation ratio at the end,
pods never placed, the CPU seconds slotwise, kube-scheduler and kube-apiserver used while pods
were created and bound, and slotwise's peak memory.

For slotwise's profiles, the same pods in the same order also go through the simulator
(``simulator.replay``, on the nodes and pods parsed from the very objects sent to the API
server, in the order slotwise's cache lists them): the share of pods placed on the same node, of
pods placed in both or in neither, and the difference in final GPU allocation.

    python3 benchmarks/cluster.py                               # 1,213 nodes, 8,152 pods, as fast as possible
    python3 benchmarks/cluster.py --rate 50                     # 50 pods/s
    python3 benchmarks/cluster.py --nodes 5000 --configs kube,fgd --json cluster.json
    python3 benchmarks/cluster.py --nodes 5000 --pods 30000 --configs default   # slotwise's memory at scale
    python3 benchmarks/cluster.py --nodes 60 --pods 300         # a quick look (minutes)

It builds the control plane on first use (e2e/build.sh, about 20 minutes on 2 cores, cached).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import queue
import re
import ssl
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.server import cpu_seconds, peak_mib  # noqa: E402
from e2e.cluster import KWOK_ANNOTATION, Cluster, running  # noqa: E402
from quota.store import Store  # noqa: E402
from scheduler.model.k8s_json import node_from_k8s, pod_from_k8s  # noqa: E402
from scheduler.placement.workload import TargetWorkload  # noqa: E402
from simulator.replay import replay  # noqa: E402
from slotwise.server.gpu_shares import ReservationSettings, reservation_room  # noqa: E402

OPENB = ROOT.parent / "shared" / "traces" / "openb"
NAMESPACE = "bench"
GPU = "nvidia.com/gpu"
SHARE = "slotwise.io/gpu-milli"
CONFIGS = ("kube", "default", "fgd")
#: kube-scheduler's client rate to the API server in every configuration alike (its default, 50
#: requests/s, would cap every configuration at about 50 binds/s and hide the differences).
SCHEDULER_QPS = 500.0


# The objects --------------------------------------------------------------------------------------
def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def node_objects(rows: list[dict[str, str]], count: int | None, shares_as_resource: bool) -> list[dict[str, Any]]:
    """The openb nodes as kwok plays them (replicated to ``count``); with ``shares_as_resource``
    each GPU also advertises 1000 ``slotwise.io/gpu-milli`` (kube-scheduler alone)."""
    count = count or len(rows)
    objects = []
    for i in range(count):
        row = rows[i % len(rows)]
        name = row["sn"] if i < len(rows) else f"{row['sn']}-r{i // len(rows)}"
        gpus = int(row["gpu"])
        capacity = {"cpu": f"{row['cpu_milli']}m", "memory": f"{row['memory_mib']}Mi", "pods": "110"}
        labels = {"kubernetes.io/hostname": name, "type": "kwok"}
        if gpus:
            capacity[GPU] = str(gpus)
            labels["nvidia.com/gpu.product"] = row["model"]
            if shares_as_resource:
                capacity[SHARE] = str(1000 * gpus)
        objects.append({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": name, "labels": labels, "annotations": dict([KWOK_ANNOTATION])},
                        "status": {"capacity": capacity, "allocatable": capacity}})
    return objects


def pod_objects(rows: list[dict[str, str]], count: int | None, seed: int) -> list[dict[str, Any]]:
    """The openb pods in one seeded order, named so that name order is creation order (the
    admission loop decides pods created in the same second by name). More pods than the trace
    holds (for a cluster of replicated nodes) take further permutations of it."""
    rng = np.random.default_rng(seed)
    wanted = len(rows) if count is None else count
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(-(-wanted // len(rows)))])[:wanted]
    objects = []
    for i, index in enumerate(order.tolist()):
        row = rows[index]
        requests = {"cpu": f"{row['cpu_milli']}m", "memory": f"{row['memory_mib']}Mi"}
        gpus, milli = int(row["num_gpu"]), int(row["gpu_milli"])
        limits = {}
        if gpus and milli < 1000:
            limits[SHARE] = str(milli)
        elif gpus:
            limits[GPU] = str(gpus)
        spec: dict[str, Any] = {"containers": [{"name": "main", "image": "registry.example/train:1",
                                                "resources": {"requests": {**requests, **limits}, "limits": limits}}],
                                "terminationGracePeriodSeconds": 0}
        models = [m for m in (row.get("gpu_spec") or "").split("|") if m]
        if models:
            spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": models}]}]}}}
        objects.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": f"p{i:05d}-{row['name']}", "namespace": NAMESPACE},
                        "spec": spec})
    return objects


def pool(nodes: list[dict[str, Any]]) -> str:
    """One pool guaranteed the whole cluster: quota is not what this measures."""
    parsed = [node_from_k8s(n) for n in nodes]
    cpu = sum(n.allocatable["cpu"] for n in parsed) // 1000 + 1
    memory = sum(n.allocatable["memory"] for n in parsed)
    gpus = sum(n.allocatable[GPU] for n in parsed)
    return (f"pools:\n  - name: {NAMESPACE}\n    guaranteed: {{cpu: \"{cpu}\", memory: \"{memory}\", "
            f"nvidia.com/gpu: \"{gpus}\"}}\n")


# The API server -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Api:
    """The API server as an admin reaches it: what a process of its own needs to be a client."""
    server: str
    certificates: Path  # the cluster's folder: ca.crt, admin.crt, admin.key

    @classmethod
    def of(cls, cluster: Cluster) -> Api:
        return cls(cluster.server, cluster.workdir)


def client(api: Api, timeout: float = 30.0) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(api.certificates / "ca.crt"))
    context.load_cert_chain(api.certificates / "admin.crt", api.certificates / "admin.key")
    return httpx.Client(base_url=api.server, verify=context, timeout=timeout)


def create_all(api: Api, path: str, objects: list[dict[str, Any]], creators: int, rate: float,
               created: dict[str, float] | None = None) -> None:
    """POST each object, at ``rate`` per second (0: as fast as ``creators`` clients go); record
    when each create was answered. A refusal other than "already exists" stops the run."""
    work: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
    start = time.monotonic()
    for i, obj in enumerate(objects):
        work.put((start + i / rate if rate else 0.0, obj))
    errors: list[str] = []

    def create() -> None:
        with client(api) as http:
            while not errors:
                try:
                    due, obj = work.get_nowait()  # type: ignore[misc]
                except queue.Empty:
                    return
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                reply = http.post(path, json=obj)
                if reply.status_code not in (201, 409):
                    errors.append(f"{obj['metadata']['name']}: {reply.status_code} {reply.text[:300]}")
                elif created is not None:
                    created[obj["metadata"]["name"]] = time.monotonic()

    threads = [threading.Thread(target=create) for _ in range(creators)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"creating {path} failed: {errors[0]}")


class BindWatch:
    """The namespace's pods, watched from before the first is created: when each was first seen
    bound, and to which node; and when first seen without a scheduling gate (slotwise's lifted)."""

    def __init__(self, api: Api):
        self.bound: dict[str, tuple[float, str]] = {}
        self.ungated: dict[str, float] = {}
        self._http = client(api, timeout=None)  # type: ignore[arg-type]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        try:
            self._follow()
        except httpx.HTTPError:
            if not self._stop.is_set():
                raise

    def _follow(self) -> None:
        version = self._http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").json()["metadata"]["resourceVersion"]
        while not self._stop.is_set():
            with self._http.stream("GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                                   params={"watch": "1", "resourceVersion": version}) as stream:
                for line in stream.iter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    node = obj.get("spec", {}).get("nodeName")
                    name = obj["metadata"].get("name")
                    if not obj.get("spec", {}).get("schedulingGates") and name not in self.ungated:
                        self.ungated[name] = time.monotonic()
                    if node and name not in self.bound:
                        self.bound[name] = (time.monotonic(), node)
                    if self._stop.is_set():
                        return

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Timings:
    created: dict[str, float]  # when each create was answered (time.monotonic, the same in every process)
    bound: dict[str, tuple[float, str]]
    ungated: dict[str, float]
    wall_s: float  # from the first create to the last binding and the settle after it
    cpu_s: float  # the load's own CPU over that time


class Load:
    """The pods created and their bindings watched from a process of its own: in this one, the
    Service's proxy (e2e/proxy.py, which every webhook and extender call crosses, as kube-proxy's
    kernel forwarding would) would wait for the GIL behind the creating clients' TLS and the
    watch's JSON, a cost a real cluster's Service does not have."""

    def __init__(self, api: Api, pods: list[dict[str, Any]], args: argparse.Namespace, say: Callable[[str], None]):
        self._say = say
        spawn = multiprocessing.get_context("spawn")
        self._conn, child = spawn.Pipe()
        self._process = spawn.Process(
            target=_drive, args=(api, pods, args.creators, args.rate, args.settle, child), daemon=True)
        self._process.start()
        self._expect()  # watching, and about to create: the caller reads the CPU counters now

    def _expect(self) -> Any:
        message = self._conn.recv()
        if isinstance(message, Exception):
            raise message
        return message

    def result(self) -> Timings:
        self._conn.send("go")
        self._say(self._expect())
        timings = self._expect()
        self._process.join()
        return timings


def _drive(api: Api, pods: list[dict[str, Any]], creators: int, rate: float, settle: float, conn: Connection) -> None:
    try:
        watch = BindWatch(api)
        time.sleep(1)
        conn.send("watching")
        conn.recv()
        cpu, begun = time.process_time(), time.monotonic()
        created: dict[str, float] = {}
        create_all(api, f"/api/v1/namespaces/{NAMESPACE}/pods", pods, creators, rate, created)
        conn.send(f"{len(pods)} pods created in {time.monotonic() - begun:.0f} s")
        last, count = time.monotonic(), -1
        while len(watch.bound) < len(pods) and time.monotonic() - last < settle:
            if len(watch.bound) != count:
                last, count = time.monotonic(), len(watch.bound)
            time.sleep(0.5)
        watch.stop()
        conn.send(Timings(created, dict(watch.bound), dict(watch.ungated), time.monotonic() - begun,
                          time.process_time() - cpu))
    except Exception as exc:  # the parent raises it
        conn.send(exc)


def schedulable(node: dict[str, Any]) -> bool:
    """Ready, and rid of the not-ready taint the node lifecycle controller puts on a new node (a
    run that starts before it is lifted places its first pods elsewhere, live and simulated alike
    no longer)."""
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))
    return ready and not node.get("spec", {}).get("taints")


# What a run shows -----------------------------------------------------------------------------------
def overcommitted(pods: dict[str, dict[str, Any]], placed: dict[str, str], gpus_of: dict[str, int]) -> set[str]:
    """Shares kube-scheduler put where the node's GPUs have no room for them: per node, the
    shares packed first-fit decreasing onto the GPUs whole-GPU pods left."""
    whole: dict[str, int] = defaultdict(int)
    shares: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for name, node in placed.items():
        limits = pods[name]["spec"]["containers"][0]["resources"]["limits"]
        if GPU in limits:
            whole[node] += int(limits[GPU])
        elif SHARE in limits:
            shares[node].append((int(limits[SHARE]), name))
    bad = set()
    for node, items in shares.items():
        free = [1000] * max(gpus_of[node] - whole[node], 0)
        for milli, name in sorted(items, reverse=True):
            slot = next((i for i, left in enumerate(free) if left >= milli), None)
            if slot is None:
                bad.add(name)
            else:
                free[slot] -= milli
    return bad


def why_waiting(pod: dict[str, Any]) -> tuple[str, str]:
    """The type and reason of a pod's failing condition (slotwise's, or kube-scheduler's
    PodScheduled), and its message."""
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("status") == "False":
            return f"{condition['type']} {condition.get('reason', '')}", condition.get("message", "")
    return "no condition", ""


def gpu_milli(pod: dict[str, Any]) -> int:
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    return 1000 * int(limits.get(GPU, 0)) + int(limits.get(SHARE, 0))


@dataclass
class Result:
    config: str
    nodes: int
    pods: int
    rate: float
    bound: int = 0
    invalid: int = 0
    never_placed: int = 0
    pods_per_s: float = 0.0
    p50_s: float = 0.0
    p99_s: float = 0.0
    p50_gated_s: float = 0.0  # creation to the admission gate lifted: the rest of p50 is kube-scheduler's
    allocation: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    slotwise_peak_mib: float | None = None
    wall_s: float = 0.0
    same_node: float | None = None
    same_outcome: float | None = None
    sim_allocation: float | None = None
    same_node_decided_order: float | None = None
    waiting: dict[str, int] = field(default_factory=dict)  # never placed, by the reason the pod shows
    example: dict[str, str] = field(default_factory=dict)  # a message for each reason
    rebuilds: dict[str, int] = field(default_factory=dict)  # slotwise's whole snapshot builds, by cause
    rebuild_s: float = 0.0  # and the seconds they took


def sustained(times: list[float]) -> float:
    """Bindings per second between the 10% and the 90% binding."""
    times = sorted(times)
    if len(times) < 10:
        return float("nan")
    a, b = times[len(times) // 10], times[9 * len(times) // 10]
    return (9 * len(times) // 10 - len(times) // 10) / (b - a) if b > a else float("inf")


def run(config: str, node_rows: list[dict[str, str]], pods: list[dict[str, Any]], args: argparse.Namespace) -> Result:
    slotwise = config != "kube"
    nodes = node_objects(node_rows, args.nodes, shares_as_resource=not slotwise)
    settings: dict[str, Any] = {"with_slotwise": slotwise, "scheduler_qps": SCHEDULER_QPS}
    if slotwise:
        settings["serve_options"] = [f"--profile={config}"]
    result = Result(config, len(nodes), len(pods), args.rate)

    def say(text: str) -> None:
        print(f"[{config}] {text}", file=sys.stderr, flush=True)

    with running(**settings) as cluster:
        api = Api.of(cluster)
        started = time.monotonic()
        create_all(api, "/api/v1/nodes", nodes, args.creators, 0)
        with client(api) as http:
            while True:
                if sum(map(schedulable, http.get("/api/v1/nodes").json()["items"])) >= len(nodes):
                    break
                time.sleep(1)
            say(f"{len(nodes)} nodes ready and untainted in {time.monotonic() - started:.0f} s")
            labels = {"slotwise.io/managed": "true"} if slotwise else {}
            http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": NAMESPACE, "labels": labels}}).raise_for_status()
        if slotwise:  # its pool, and a start that lists the nodes whole (the order the simulator gets)
            cluster.use_pools(pool(nodes))
        # Every component, and this process, which now only runs the Service's proxy: on two
        # cores each one's CPU is taken from the others.
        processes = {name: process.pid for name, process in cluster.processes.items()} | {"proxy": os.getpid()}
        load = Load(api, pods, args, say)
        before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        timings = load.result()
        result.wall_s = timings.wall_s
        result.cpu_s = {name: cpu_seconds(pid) - before[name] for name, pid in processes.items()}
        result.cpu_s["benchmark"] = timings.cpu_s
        if "slotwise" in processes:
            result.slotwise_peak_mib = peak_mib(processes["slotwise"])
        with client(api) as http:
            listed = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").json()["items"]
            tainted = len(nodes) - sum(map(schedulable, http.get("/api/v1/nodes").json()["items"]))
        if tainted:  # a heartbeat kwok sent too late: the run is not what a cluster of kubelets would see
            say(f"warning: {tainted} nodes not ready or tainted at the end")
        decided = decision_order(cluster.db_url) if slotwise else []
        reasons = [why_waiting(p) for p in listed if not p["spec"].get("nodeName")]
        result.waiting = dict(Counter(why for why, _ in reasons).most_common())
        result.example = {why: message[:200] for why, message in reversed(reasons)}
        if slotwise:
            result.rebuilds, result.rebuild_s = snapshot_builds(cluster.path("slotwise.log"))
        say(f"{len(timings.bound)} bound, {result.wall_s:.0f} s")

    by_name = {p["metadata"]["name"]: p for p in pods}
    placed = {name: node for name, (_, node) in timings.bound.items() if name in by_name}
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        # Each pod's times (time.monotonic): when its create was answered, its gate seen lifted, it was seen bound.
        times = {name: [timings.created.get(name), timings.ungated.get(name), bound[0] if bound else None]
                 for name in by_name for bound in [timings.bound.get(name)]}
        (args.save / f"{config}.json").write_text(json.dumps({"nodes": nodes, "pods": pods, "placed": placed,
                                                              "decided": decided, "times": times}))
    gpus_of = {n["metadata"]["name"]: int(n["status"]["allocatable"].get(GPU, 0)) for n in nodes}
    invalid = overcommitted(by_name, placed, gpus_of) if not slotwise else set()
    capacity = 1000 * sum(gpus_of.values())
    created = timings.created
    latencies = [timings.bound[name][0] - created[name] for name in placed if name in created]
    result.bound, result.invalid = len(placed), len(invalid)
    result.never_placed = len(pods) - len(placed)
    result.pods_per_s = sustained([t for name, (t, _) in timings.bound.items() if name in by_name])
    if latencies:
        result.p50_s = statistics.median(latencies)
        result.p99_s = float(np.percentile(latencies, 99))
        result.p50_gated_s = statistics.median(timings.ungated[name] - created[name] for name in placed
                                               if name in created and name in timings.ungated)
    result.allocation = sum(gpu_milli(by_name[name]) for name in placed if name not in invalid) / capacity
    if slotwise:
        model_nodes = sorted((node_from_k8s(n) for n in nodes), key=lambda n: n.name)
        model_pods = {f"{NAMESPACE}/{p['metadata']['name']}": pod_from_k8s(p) for p in pods}
        live = {f"{NAMESPACE}/{name}": placed.get(name) for name in by_name}
        room = reservation_room(ReservationSettings())  # as deploy/ runs it
        simulated = replay(model_nodes, list(model_pods.values()), config, group_room=room)
        result.same_node = same_node(live, simulated)
        result.same_outcome = sum((live[k] is None) == (simulated[k] is None) for k in live) / len(live)
        result.sim_allocation = sum(gpu_milli(by_name[k.split("/", 1)[1]]) for k, v in simulated.items() if v) / capacity
        # The same, in the order slotwise decided the pods (its audit trail), which differs from
        # creation order where pods created close together reached it in different cycles.
        ordered = [model_pods[k] for k in decided if k in model_pods]
        ordered += [p for k, p in model_pods.items() if k not in set(decided)]
        result.same_node_decided_order = same_node(live, replay(model_nodes, ordered, config, group_room=room,
                                                                workload=TargetWorkload.from_pods(model_pods.values())))
    return result


_BUILT = re.compile(r"snapshot built in (\d+) ms \([^)]*\): ([^:]+)")


def snapshot_builds(log: Path) -> tuple[dict[str, int], float]:
    """slotwise's whole snapshot builds, by cause, and their seconds, from its log."""
    builds = [(m[2], int(m[1])) for m in map(_BUILT.search, log.read_text(errors="replace").splitlines()) if m]
    return dict(Counter(why for why, _ in builds).most_common()), sum(ms for _, ms in builds) / 1000


def decision_order(db_url: str) -> list[str]:
    """The pods slotwise placed, in the order it decided them (first decision of each)."""
    store = Store(db_url)
    try:
        places = [e.subject for e in reversed(store.audit(limit=1_000_000)) if e.action == "place"]
    finally:
        store.close()
    return list(dict.fromkeys(places))


def same_node(live: dict[str, str | None], simulated: dict[str, str | None]) -> float:
    """Of the pods placed live, the share the simulation placed on the same node (whether the
    others were placed at all is ``same_outcome``)."""
    placed = {key: node for key, node in live.items() if node is not None}
    return sum(node == simulated[key] for key, node in placed.items()) / max(len(placed), 1)


def table(results: list[Result]) -> str:
    kube = next((r for r in results if r.config == "kube"), None)
    lines = ["| configuration | nodes | pods | rate | bound | over-committed | never placed | pods/s | vs kube | "
             "p50 s | p99 s | p50 s gated | GPU allocated | CPU s slotwise | CPU s kube-scheduler | CPU s kube-apiserver | "
             "slotwise peak MiB | same node as simulated | in slotwise's order | simulated allocation |",
             "|" + "---|" * 20]
    for r in results:
        ratio = f"{r.pods_per_s / kube.pods_per_s:.2f}" if kube and kube.pods_per_s else ""
        lines.append(
            f"| {r.config} | {r.nodes:,} | {r.pods:,} | {r.rate or 'max'} | {r.bound:,} | {r.invalid:,} | "
            f"{r.never_placed:,} | {r.pods_per_s:.1f} | {ratio} | {r.p50_s:.2f} | {r.p99_s:.2f} | {r.p50_gated_s:.2f} | "
            f"{100 * r.allocation:.2f}% | {r.cpu_s.get('slotwise', 0):.0f} | {r.cpu_s.get('kube-scheduler', 0):.0f} | "
            f"{r.cpu_s.get('kube-apiserver', 0):.0f} | {r.slotwise_peak_mib or 0:.0f} | "
            + (f"{100 * r.same_node:.1f}% | {100 * (r.same_node_decided_order or 0):.1f}% | "
               f"{100 * (r.sim_allocation or 0):.2f}% |" if r.same_node is not None else " | | |"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=None, help="nodes (default: the openb node list, 1,213)")
    parser.add_argument("--pods", type=int, default=None, help="pods (default: every openb default pod; more repeat them, reshuffled)")
    parser.add_argument("--rate", type=float, default=0.0, help="pods created per second (default 0: as fast as possible)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--creators", type=int, default=8, help="clients creating pods in parallel")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds without a new binding that end a run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--traces", type=Path, default=OPENB)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--save", type=Path, help="write each configuration's objects, live placements, "
                                                  "decision order and each pod's created / gate lifted / bound "
                                                  "times into this folder (to compare with a simulation)")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    if unknown := set(configs) - set(CONFIGS):
        parser.error(f"unknown configuration(s) {', '.join(sorted(unknown))}; choose from {', '.join(CONFIGS)}")
    node_rows = read_csv(args.traces / "openb_node_list_gpu_node.csv")
    pods = pod_objects(read_csv(args.traces / "openb_pod_list_default.csv"), args.pods, args.seed)
    results = [run(config, node_rows, pods, args) for config in configs]
    print(table(results))
    for r in results:
        for why, count in r.waiting.items():
            print(f"{r.config}: {count} never placed, {why}, e.g. {r.example[why]}")
        print(f"{r.config}: CPU s by process: " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in
                                                         sorted(r.cpu_s.items(), key=lambda kv: -kv[1])))
        if r.rebuilds:
            print(f"{r.config}: slotwise built its snapshot whole {sum(r.rebuilds.values())} time(s) in "
                  f"{r.rebuild_s:.1f} s: " + ", ".join(f"{why} {n}" for why, n in r.rebuilds.items()))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
