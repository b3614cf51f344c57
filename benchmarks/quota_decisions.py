"""Quota decision latency: ``decide`` for single pods, and reclaim plans, on a busy ledger.

Builds a 3-level pool tree (divisions > groups of 10 > projects; 100 projects by default) with
guarantees on cpu, memory and GPUs of three models, a public pool, shareable and private
guarantees, some caps and borrow limits. Projects' demand is skewed, so that charging the
workloads (each one admitted through ``decide`` and charged as a caller would) makes the busy
projects borrow what the quiet ones lend. Then it times:

- ``decide`` for random single-pod requests against that ledger (not applied);
- ``decide`` returning Reclaim: a project asks for part of a guarantee it has lent, while
  borrowers fill the cluster (the reclaim plan is most of that time).

    python3 benchmarks/quota_decisions.py
    python3 benchmarks/quota_decisions.py --projects 200 --workloads 20000 --json out.json

Seeded: the same arguments give the same tree, workloads, requests and decisions.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import Counter

import numpy as np

from quota.admission import Reclaim, Request, decide
from quota.config import QuotaConfigError, compile_document, parse_document
from quota.ledger import Ledger
from scheduler.model.resources import CPU, GPU, MEMORY, Resources, gpu_quota_resource

GiB = 2**30
MODELS = ("A100", "H100", "T4")
GPU_SIZES = ((1, 0.5), (2, 0.25), (4, 0.15), (8, 0.1))  # GPUs per pod and their share of GPU pods
GPU_POD_SHARE = 0.4


def random_pod(rng: random.Random, models: tuple[str, ...]) -> tuple[Resources, frozenset[str] | None]:
    cpu = rng.choice((500, 1000, 2000, 4000, 8000))
    memory = rng.choice((2, 4, 8, 16, 32)) * GiB
    if rng.random() >= GPU_POD_SHARE:
        return Resources({CPU: cpu, MEMORY: memory}), None
    gpus = rng.choices([g for g, _ in GPU_SIZES], weights=[w for _, w in GPU_SIZES])[0]
    return Resources({CPU: cpu, MEMORY: memory, GPU: gpus * 1000}), frozenset(models)


def lent_by(pools: list[dict]) -> dict[str, str]:
    total: Counter[str] = Counter()
    for p in pools:
        for resource, amount in p.get("shareable", {}).items():
            total[resource] += int(amount)
    return {r: str(v) for r, v in total.items()}


def build(projects: int, workloads: int, seed: int):
    """The ledger with ``workloads`` charged, the projects' accepted models and the request stream."""
    rng = random.Random(seed)
    names = [f"p{i:03d}" for i in range(projects)]
    models = {p: tuple(sorted(rng.sample(MODELS, 2))) for p in names}
    busy = {p: rng.choice((0.3, 0.6, 1.0, 1.0, 1.5, 3.0)) for p in names}  # demand skew

    # Mean demand per workload, to size guarantees so that the charged workloads fill the cluster.
    mean_gpus = GPU_POD_SHARE * sum(g * w for g, w in GPU_SIZES)
    per_project = workloads / projects
    docs, groups = [], []
    for i, p in enumerate(names):
        share = per_project * rng.uniform(0.7, 1.3)
        gpus = share * mean_gpus / 2 * 1.05
        guaranteed = {CPU: f"{share * 3.1 * 1.1:.0f}", MEMORY: f"{share * 12.4 * 1.1:.0f}Gi"}
        guaranteed |= {gpu_quota_resource(m): f"{gpus:.0f}" for m in models[p]}
        doc = {"name": p, "guaranteed": guaranteed}
        kind = i % 4
        if kind in (0, 1):  # lends its GPUs (all or half) and cpu while idle
            doc["shareable"] = {gpu_quota_resource(m): f"{gpus * (1 if kind == 0 else 0.5):.0f}" for m in models[p]}
            doc["shareable"][CPU] = guaranteed[CPU]
        if kind == 1:
            doc["max"] = {gpu_quota_resource(m): f"{gpus * 3:.0f}" for m in models[p]}
        if kind == 2:
            doc["borrow_limit"] = {gpu_quota_resource(m): f"{gpus:.0f}" for m in models[p]}
        docs.append(doc)
    for g in range(0, projects, 10):  # guarantees derived from the projects; lends what they lend
        groups.append({"name": f"group{g // 10:02d}", "pools": docs[g:g + 10],
                       "shareable": lent_by(docs[g:g + 10])})
    divisions = [{"name": f"division{d}", "pools": groups[d::2]} for d in range(2)]
    for d in divisions:
        d["shareable"] = lent_by(d["pools"])
    public = {"name": "spare", "public": True,
              "guaranteed": {gpu_quota_resource(m): str(max(1, projects // 10)) for m in MODELS}}
    config = compile_document(parse_document({"pools": [*divisions, public]}))
    ledger = Ledger(config)

    weights = [busy[p] for p in names]
    charged, attempts, kinds = 0, 0, Counter()
    now = 0.0
    while charged < workloads and attempts < 5 * workloads:
        attempts += 1
        now += 1.0
        project = rng.choices(names, weights=weights)[0]
        charge, accepted = random_pod(rng, models[project])
        request = Request(f"w{attempts}", project, charge, rng.randint(0, 9), accepted)
        decision = decide(ledger, request, now)
        kinds[decision.kind] += 1
        if decision.kind in ("admit", "borrow"):
            ledger.add(request.charged(decision.gpu_model, now))
            charged += 1
    return ledger, names, models, rng, now, kinds


def percentiles(times_ns: list[int]) -> dict[str, float]:
    ms = np.asarray(times_ns) / 1e6
    return {"n": len(ms), "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def time_decisions(ledger: Ledger, names, models, rng: random.Random, now: float, count: int):
    times, kinds, by_kind = [], Counter(), {}
    for i in range(count):
        project = rng.choice(names)
        charge, accepted = random_pod(rng, models[project])
        request = Request(f"bench{i}", project, charge, rng.randint(0, 9), accepted)
        start = time.perf_counter_ns()
        decision = decide(ledger, request, now)
        times.append(time.perf_counter_ns() - start)
        kinds[decision.kind] += 1
        by_kind.setdefault(decision.kind, []).append(times[-1])
    result = percentiles(times)
    result["median_ms_by_outcome"] = {k: float(np.median(v)) / 1e6 for k, v in sorted(by_kind.items())}
    return result, kinds


def fill_with_borrowers(ledger: Ledger, names, models, rng: random.Random, now: float) -> tuple[float, int]:
    """Busy projects take every idle GPU they may borrow, one 1-GPU pod at a time."""
    added, failures = 0, 0
    while failures < 200:
        now += 1.0
        project = rng.choice(names)
        request = Request(f"fill{added}-{failures}", project, Resources({CPU: 500, MEMORY: GiB, GPU: 1000}),
                          rng.randint(0, 9), frozenset(models[project]))
        decision = decide(ledger, request, now)
        if decision.kind in ("admit", "borrow"):
            ledger.add(request.charged(decision.gpu_model, now))
            added += 1
            failures = 0
        else:
            failures += 1
    return now, added


def time_reclaims(ledger: Ledger, names, models, rng: random.Random, now: float, count: int):
    """Owners ask for part of the GPU guarantee they lend: decide answers Reclaim (timed)."""
    gpu_columns = {m: ledger.column[gpu_quota_resource(m)] for m in MODELS}
    times, victims, kinds = [], [], Counter()
    owners = [p for p in names if ledger.idle_lendable(ledger.row[p]).any()]
    for i in range(20 * count):
        if len(times) >= count or not owners:
            break
        project = rng.choice(owners)
        row = ledger.row[project]
        idle = ledger.idle_lendable(row)
        lent = [m for m in models[project] if idle[gpu_columns[m]] >= 1000]
        if not lent:
            continue
        model = rng.choice(lent)
        gpus = rng.randint(1, min(8, int(idle[gpu_columns[model]] // 1000)))
        request = Request(f"own{i}", project, Resources({CPU: 1000, MEMORY: 4 * GiB, GPU: gpus * 1000}), 5,
                          frozenset({model}))
        start = time.perf_counter_ns()
        decision = decide(ledger, request, now + 3600)
        elapsed = time.perf_counter_ns() - start
        kinds[decision.kind] += 1
        if isinstance(decision, Reclaim):
            times.append(elapsed)
            victims.append(len(decision.victims))
    result = percentiles(times) if times else {"n": 0}
    if victims:
        result["mean_victims"] = float(np.mean(victims))
    return result, kinds


def time_alias_document(pools: int = 20_000, repeats: int = 5) -> float:
    """Median seconds to refuse what a few hundred bytes of YAML aliases expand to: ``pools``
    children of one name under a pool of that name (each pool's children were once looked for
    among all pools: minutes)."""
    document = parse_document({"pools": [{"name": "a", "pools": [{"name": "a"}] * pools}]})
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            compile_document(document)
        except QuotaConfigError:
            pass
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=100, help="projects (leaf pools), in groups of 10")
    parser.add_argument("--workloads", type=int, default=10_000, help="running workloads charged before timing")
    parser.add_argument("--decisions", type=int, default=2_000, help="single-pod decisions to time")
    parser.add_argument("--reclaims", type=int, default=200, help="reclaim decisions to time")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    start = time.perf_counter()
    ledger, names, models, rng, now, charge_kinds = build(args.projects, args.workloads, args.seed)
    setup_s = time.perf_counter() - start
    borrowing = sum(1 for p in names if ledger.borrowing(ledger.row[p]).any())
    print(f"{len(ledger.names) - 1} pools ({args.projects} projects), {len(ledger.resources)} resources, "
          f"{len(ledger.workloads):,} workloads charged in {setup_s:.1f} s "
          f"({dict(charge_kinds)}); {borrowing} projects borrowing")

    decisions, decision_kinds = time_decisions(ledger, names, models, rng, now, args.decisions)
    now, added = fill_with_borrowers(ledger, names, models, rng, now)
    reclaims, reclaim_kinds = time_reclaims(ledger, names, models, rng, now, args.reclaims)

    rows = [("decide (single pod)", decisions, decision_kinds), ("decide -> Reclaim", reclaims, reclaim_kinds)]
    print(f"after timing decisions, {added:,} 1-GPU borrowers filled the idle GPUs "
          f"({len(ledger.workloads):,} workloads)")
    print(f"{'':22} {'n':>6} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}  outcomes")
    for name, r, kinds in rows:
        if not r.get("n"):
            print(f"{name:22} {0:>6}  (none)  {dict(kinds)}")
            continue
        print(f"{name:22} {r['n']:>6} {r['median_ms']:>10.3f} {r['p90_ms']:>8.3f} {r['p99_ms']:>8.3f} "
              f"{r['max_ms']:>8.3f}  {dict(kinds)}")
    print("decide median by outcome: " + ", ".join(
        f"{k} {v:.3f} ms" for k, v in decisions["median_ms_by_outcome"].items()))
    if reclaims.get("mean_victims") is not None:
        print(f"victims per reclaim: {reclaims['mean_victims']:.1f} on average")
    alias_s = time_alias_document()
    print(f"configuration check, 20,000 pools of one name (YAML aliases): {alias_s:.2f} s median of 5, refused")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "machine": {"arch": platform.machine(), "python": platform.python_version()},
                       "pools": len(ledger.names) - 1, "workloads": len(ledger.workloads),
                       "decide": decisions | {"outcomes": dict(decision_kinds)},
                       "reclaim": reclaims | {"outcomes": dict(reclaim_kinds)}}, f, indent=2)


if __name__ == "__main__":
    main()
