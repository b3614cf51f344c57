"""The admission loop's cycle on a large cluster, without an API server: what one cycle costs in
slotwise's own process, and how much of it is per cycle rather than per pod.

A cache is filled with ``--nodes`` generated nodes (benchmarks/server.py's) and ``--bound`` bound
pods; each cycle then adds ``--batch`` gated pods and runs the loop once, with a SQLite quota store
(a file, as ``slotwise serve`` keeps it) and a Kubernetes client that drops every write. The pods it
ungates are then shown bound, as kube-scheduler would bind them, so the next cycle starts from
the cluster the last one left. Prints the median and p90 cycle time and the time per pod decided.

    python3 benchmarks/admission_cycle.py                        # 5,000 nodes, 8,000 bound, 8 per cycle
    python3 benchmarks/admission_cycle.py --bound 30000 --batch 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.server import node, pod  # noqa: E402
from quota.config import config_from_yaml  # noqa: E402
from quota.store import Store  # noqa: E402
from slotwise.server.admission_loop import AdmissionLoop, Ungate  # noqa: E402
from slotwise.server.cache import ClusterCache  # noqa: E402
from slotwise.server.webhooks import ADMISSION_GATE  # noqa: E402

#: A pool guaranteed far more than the cluster holds: quota admits every pod, as in benchmarks/cluster.py.
POOL = 'pools:\n  - name: bench\n    guaranteed: {cpu: "10000000", memory: "1000000Ti", nvidia.com/gpu: "1000000"}\n'


class DroppingKube:
    """Takes every write the loop makes and keeps nothing: the API server's side is not measured here."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def bound_pods(nodes: int, count: int) -> list[dict[str, Any]]:
    """``count`` pods spread over the nodes in turn, each taking 2 CPUs and one GPU where the node has
    one to spare (a node of n GPUs takes n GPU pods; the rest are CPU pods)."""
    gpus = [(8, 4, 4, 0)[i % 4] for i in range(nodes)]
    out = []
    for j in range(count):
        at = j % nodes
        wants_gpu = j // nodes < gpus[at]
        out.append(pod(f"run-{j}", 1 if wants_gpu else 0, 2, f"n{at}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--bound", type=int, default=8000, help="pods bound before the first cycle")
    parser.add_argument("--batch", type=int, default=8, help="gated pods per cycle")
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    nodes = [node(i) for i in range(args.nodes)]
    for n in nodes:
        n["status"]["allocatable"]["cpu"] = "256"  # room for every pod the cycles add
    cache = ClusterCache()
    cache.replace("nodes", nodes)
    cache.replace("pods", bound_pods(args.nodes, args.bound))
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'quota.db'}")
        store.migrate()
        store.replace_config(config_from_yaml(POOL), "benchmark")
        loop = AdmissionLoop(cache, DroppingKube(), store)  # type: ignore[arg-type]  # a stand-in
        waiting: dict[str, dict[str, Any]] = {}
        times: list[float] = []
        decided = 0
        for c in range(args.cycles + 3):  # the first three warm the caches up
            for j in range(args.batch):
                obj = pod(f"new-{c}-{j}", int(rng.integers(0, 2)), 2)
                obj["metadata"]["labels"] = {"slotwise.io/project": "bench"}
                obj["spec"]["schedulingGates"] = [{"name": ADMISSION_GATE}]
                waiting[f"bench/{obj['metadata']['name']}"] = obj
                cache.apply("pods", "ADDED", obj)
            start = time.perf_counter()
            actions = loop.run_once()
            if c >= 3:
                times.append(time.perf_counter() - start)
            for action in actions:
                if isinstance(action, Ungate):
                    obj = waiting.pop(action.pod_key)
                    obj["spec"] |= {"nodeName": action.node, "schedulingGates": []}
                    cache.apply("pods", "MODIFIED", obj)
                    decided += c >= 3
        store.close()
    median, p90 = statistics.median(times), float(np.percentile(times, 90))
    print(f"{args.nodes:,} nodes, {args.bound:,} pods bound, {args.batch} gated per cycle, {args.cycles} cycles")
    print(f"cycle: median {median * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms; "
          f"{sum(times) / max(decided, 1) * 1000:.2f} ms per pod placed ({decided:,} placed)")


if __name__ == "__main__":
    main()
