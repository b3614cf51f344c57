"""Extender and webhook latency over HTTP on loopback, as kube-scheduler and the API server call them.

``slotwise serve`` runs as admins run it (its own process, one uvicorn worker), on a dry-run cluster
of ``--nodes`` nodes with bound pods on most GPU nodes, written as ``kubectl get -o json`` files; a
client with keep-alive then, one pod at a time as kube-scheduler's scheduling cycle does, sends
filter with every node name (or ``--names`` of them) and prioritize with the names filter kept.
Prints median and p99 per pod (filter + prioritize), the median over rounds of the pods/s that
serial cycle sustains, the service's CPU time per pod (its process, from /proc) and time in its
handlers (its /metrics), and the mutating webhook's median, p99 and CPU per review.

The client replays requests encoded beforehand, as Go's encoder writes them, and reads the replies
without decoding them: kube-scheduler does that JSON work on cores of its own, and in Python it
would weigh on the two cores slotwise is measured on. A first pass builds the requests (prioritize
is sent what filter kept) and records the replies, which every timed reply must then equal.

    python3 benchmarks/server.py                     # 5,000 nodes, 5 x 500 pods, 1,000 mutations
    python3 benchmarks/server.py --names 500         # what kube-scheduler's default sends at 5,000 nodes
    python3 benchmarks/server.py --nodes 1213 --pods 2000
    python3 benchmarks/server.py --attackers 3       # the same cycles again while 3 clients send big preempts

With ``--attackers N``, after the figures above the same cycles are replayed while N other clients
each send preempt requests of 3,000 candidate nodes back to back (what anyone who can reach the
Service could send), and the legitimate p99 under that load is printed beside the one without it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families

MODELS = ("A100-SXM4-80GB", "A10", "Tesla-T4")
#: /metrics needs a token: the benchmark's own.
METRICS_TOKEN = "benchmark-" + "m" * 32


def node(i: int) -> dict[str, Any]:
    gpus = (8, 4, 4, 0)[i % 4]
    labels = {"kubernetes.io/hostname": f"n{i}", "topology.kubernetes.io/zone": f"zone-{i % 3}"}
    allocatable = {"cpu": "64", "memory": "512Gi", "pods": "110"}
    if gpus:
        labels["nvidia.com/gpu.product"] = MODELS[i % 3]
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {"metadata": {"name": f"n{i}", "labels": labels}, "spec": {}, "status": {"allocatable": allocatable}}


def pod(name: str, gpus: int, cpu: int, node_name: str | None = None) -> dict[str, Any]:
    requests = {"cpu": str(cpu), "memory": "16Gi", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"requests": requests}}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "bench", "uid": f"uid-{name}"}, "spec": spec,
            "status": {"phase": "Running" if node_name else "Pending"}}


def start_service(folder: Path, port: int, nodes: int, bound_pods: int | None) -> tuple[subprocess.Popen[bytes], int]:
    """``slotwise serve`` on ``nodes`` generated nodes: a GPU pod bound to three quarters of them,
    then, up to ``bound_pods``, CPU pods bound to every node in turn; and how many pods are bound."""
    rng = np.random.default_rng(0)
    bound = [pod(f"run-{i}", int(rng.integers(1, 4)), 4, f"n{i}") for i in range(nodes) if i % 4 != 3]
    bound += [pod(f"cpu-{j}", 0, 2, f"n{j % nodes}") for j in range(max(0, (bound_pods or 0) - len(bound)))]
    for kind, items in (("nodes", [node(i) for i in range(nodes)]), ("pods", bound)):
        (folder / f"{kind}.json").write_text(json.dumps({"kind": "List", "items": items}))
    (folder / "metrics-token").write_text(METRICS_TOKEN)
    command = [sys.executable, "-m", "slotwise.cli", "serve", "--port", str(port), "--managed", "bench",
               "--db", f"sqlite:///{folder / 'slotwise.db'}", "--nodes", str(folder / "nodes.json"),
               "--pods", str(folder / "pods.json"), "--metrics-token-file", str(folder / "metrics-token")]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), len(bound)


def peak_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM, Linux' /proc)."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (Linux' /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(samples_s: list[float]) -> str:
    ms = np.array(samples_s) * 1000
    return f"median {statistics.median(ms):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms"


class Client:
    """One keep-alive connection (the stdlib's: httpx would add about 0.3 ms per request of the
    benchmark's own Python to every figure)."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: bytes) -> bytes:
        self.connection.request("POST", path, body=body, headers={"content-type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}: {data[:200]!r}")
        return data

    def handler_seconds(self) -> dict[tuple[str, str], float]:
        """``slotwise_decision_seconds``' sum and count so far, by ("sum" or "count", verb), from the
        service's /metrics (from reading the body to the reply; the HTTP framing is not in it)."""
        self.connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        text = self.connection.getresponse().read().decode()
        return {(sample.name.rsplit("_", 1)[1], sample.labels["verb"]): sample.value
                for family in text_string_to_metric_families(text) if family.name == "slotwise_decision_seconds"
                for sample in family.samples if sample.name.endswith(("_sum", "_count"))}

    def wait_ready(self, server: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                self.connection.request("GET", "/healthz")
                if self.connection.getresponse().read() and server.poll() is None:
                    return
            except OSError:
                self.connection.close()
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("slotwise serve did not start")
            time.sleep(0.1)


Cycle = tuple[bytes, bytes, bytes, bytes]  # filter request and reply, prioritize request and reply


def prepare(client: Client, names: list[str], sent: int, pods: int) -> list[Cycle]:
    """``pods`` scheduling cycles, each a new pod: filter with ``sent`` names, then prioritize
    with the names it kept. Fewer than all names come from a window that moves on each cycle, as
    kube-scheduler starts each search where the last one stopped."""
    cycles = []
    for k in range(pods):
        start = k * sent % len(names)
        window = names if sent == len(names) else (names + names)[start:start + sent]
        body = {"Pod": pod(f"new-{k}", (0, 1, 2, 8)[k % 4], 8), "Nodes": None, "NodeNames": window}
        filter_request = orjson.dumps(body)
        filter_reply = client.post("/extender/filter", filter_request)
        body["NodeNames"] = orjson.loads(filter_reply)["NodeNames"]
        prioritize_request = orjson.dumps(body)
        cycles.append((filter_request, filter_reply, prioritize_request,
                       client.post("/extender/prioritize", prioritize_request)))
    return cycles


def replay(client: Client, cycles: list[Cycle]) -> list[float]:
    """Seconds per cycle, filter and prioritize, each reply checked against the first pass's."""
    per_pod = []
    for filter_request, filter_reply, prioritize_request, prioritize_reply in cycles:
        start = time.perf_counter()
        filtered = client.post("/extender/filter", filter_request)
        prioritized = client.post("/extender/prioritize", prioritize_request)
        per_pod.append(time.perf_counter() - start)
        if (filtered, prioritized) != (filter_reply, prioritize_reply):
            raise SystemExit(f"the replies for {filter_request[:60]!r} changed between passes")
    return per_pod


def under_attack(port: int, client: Client, cycles: list[Cycle], attackers: int, nodes: int) -> list[float]:
    """``replay`` while ``attackers`` clients each post preempt requests back to back."""
    victims = {f"n{i}": {"Pods": [{"UID": f"uid-run-{i}"}], "NumPDBViolations": 0}
               for i in range(min(3000, nodes)) if i % 4 != 3}
    body = orjson.dumps({"Pod": pod("greedy", 8, 64), "NodeNameToMetaVictims": victims})
    stop = threading.Event()

    def attack() -> None:
        own = Client(port)
        while not stop.is_set():
            own.post("/extender/preempt", body)

    threads = [threading.Thread(target=attack, daemon=True) for _ in range(attackers)]
    for thread in threads:
        thread.start()
    time.sleep(1)  # the attack under way
    try:
        return replay(client, cycles)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--names", type=int, help="node names sent to filter (default: all; kube-scheduler's "
                        "default percentageOfNodesToScore sends about 10%% of 5,000)")
    parser.add_argument("--pods", type=int, default=500, help="pods per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bound", type=int, help="pods bound in the cluster (default: one on three quarters "
                        "of the nodes)")
    parser.add_argument("--mutations", type=int, default=1000)
    parser.add_argument("--attackers", type=int, default=0, help="replay again while this many clients send "
                        "preempt requests of 3,000 candidate nodes back to back")
    args = parser.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tempfile.TemporaryDirectory()
    server, bound = start_service(Path(folder.name), port, args.nodes, args.bound)
    names = [f"n{i}" for i in range(args.nodes)]
    try:
        client = Client(port)
        client.wait_ready(server)
        sent = min(args.names or args.nodes, args.nodes)
        cycles = prepare(client, names, sent, args.pods)
        kept = statistics.mean(len(orjson.loads(cycle[1])["NodeNames"]) for cycle in cycles)
        before, cpu_before = client.handler_seconds(), cpu_seconds(server.pid)
        per_pod: list[float] = []
        rates: list[float] = []
        for _ in range(args.rounds):
            samples = replay(client, cycles)
            per_pod += samples
            rates.append(len(samples) / sum(samples))
        print(f"extender filter + prioritize, {args.nodes} cached nodes, {sent} names sent, {args.rounds} x {args.pods} pods "
              f"(mean {kept:.0f} feasible): {summary(per_pod)}")
        print(f"sustained, one pod at a time: median {statistics.median(rates):.0f} pods/s over {args.rounds} rounds "
              f"(min {min(rates):.0f}, max {max(rates):.0f})")
        cpu = 1000 * (cpu_seconds(server.pid) - cpu_before) / len(per_pod)
        after = client.handler_seconds()
        inside = 1000 * sum((after["sum", verb] - before["sum", verb]) / (after["count", verb] - before["count", verb])
                            for verb in ("filter", "prioritize"))
        print(f"slotwise's CPU per pod (its process, user + system, HTTP included): {cpu:.2f} ms, so {1000 / cpu:.0f} "
              f"pods/s on a core of its own; in its handlers (its /metrics, mean): {inside:.2f} ms")

        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                              "resource": {"group": "", "version": "v1", "resource": "pods"},
                              "namespace": "bench", "operation": "CREATE", "object": pod("m", 1, 2),
                              "oldObject": None, "dryRun": False, "userInfo": {"username": "bench"}}}
        mutate: list[float] = []
        encoded = orjson.dumps(review)
        for k in range(args.mutations + 50):
            if k == 50:
                cpu_before = cpu_seconds(server.pid)
            start = time.perf_counter()
            client.post("/webhooks/mutate", encoded)
            if k >= 50:
                mutate.append(time.perf_counter() - start)
        cpu = 1000 * (cpu_seconds(server.pid) - cpu_before) / args.mutations
        print(f"webhook mutate, {args.mutations} reviews: {summary(mutate)}; slotwise's CPU per review {cpu:.2f} ms")
        print(f"slotwise's peak memory (VmHWM), {args.nodes} nodes and {bound} bound pods cached: {peak_mib(server.pid):.0f} MiB")
        if args.attackers:
            attacked = under_attack(port, client, cycles, args.attackers, args.nodes)
            print(f"the same cycles while {args.attackers} clients send 3,000-node preempts: {summary(attacked)}; "
                  f"p99 {np.percentile(attacked, 99) / np.percentile(per_pod, 99):.1f}x the p99 without them")
    finally:
        server.terminate()
        server.wait(10)
        folder.cleanup()


if __name__ == "__main__":
    main()
