"""The ``slotwise`` command."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from burst.cli import app as burst_app
from mig.cli import app as mig_app
from quota.cli import app as quota_app
from quota.database import DEFAULT_URL
from scheduler.console import command_group, make_console
from simulator.cli import simulate

# Each command imports what it needs when it runs: --help and the quick commands never load
# numpy, SQLAlchemy, OR-Tools, matplotlib, the Kubernetes client or FastAPI.
if TYPE_CHECKING:
    from quota.store import Store
    from scheduler.server.cache import ClusterCache

app = command_group("slotwise: placement, quota, MIG and overflow for Kubernetes ML platforms.")
console = make_console()
app.command()(simulate)
app.add_typer(quota_app, name="quota")
app.add_typer(burst_app, name="burst")
app.add_typer(mig_app, name="mig")


def _cache(nodes: Path | None, pods: Path | None, kubeconfig: Path | None, in_cluster: bool) -> ClusterCache:
    """The cluster the service decides on: a real one through the Kubernetes API (list and
    watch), or, for a dry run, the objects in ``kubectl get -o json`` files."""
    from scheduler.model import k8s_json
    from scheduler.server.cache import ClusterCache

    if kubeconfig is not None or in_cluster:
        from kubernetes import client, config

        from scheduler.server.kube import Kube

        if in_cluster:
            config.load_incluster_config()
            api = client.ApiClient()
        else:
            api = config.new_client_from_config(config_file=str(kubeconfig))
        cache = ClusterCache(Kube(api))
        cache.start()
        return cache
    cache = ClusterCache()
    if nodes is None and pods is None:  # nothing to follow: /readyz says so rather than serve an empty cluster
        return cache
    for kind, path in (("nodes", nodes), ("pods", pods)):
        cache.replace(kind, list(k8s_json.items(json.loads(path.read_text()))) if path else [])
    return cache


#: The name ``serve --admin-token-file`` keeps its token under.
BOOTSTRAP_TOKEN = "bootstrap"
SERVE_ACTOR = "serve"


def _seed(store: Store, quota_config: Path | None, admin_token_file: Path | None) -> None:
    """What an in-cluster start brings from its ConfigMap and Secret: the pools and an admin token."""
    from quota.config import config_from_yaml

    if quota_config is not None:
        changes = store.replace_config(config_from_yaml(quota_config.read_text()), SERVE_ACTOR)
        console.print(f"{quota_config}: {len(changes)} change(s)" if changes else f"{quota_config}: no changes", highlight=False)
    if admin_token_file is not None:
        if store.keep_admin_token(BOOTSTRAP_TOKEN, admin_token_file.read_text().strip(), SERVE_ACTOR):
            console.print(f"admin token {BOOTSTRAP_TOKEN!r} set from {admin_token_file}", highlight=False)


@app.command()
def serve(
    db: Annotated[str, typer.Option("--db", envvar="SLOTWISE_DB", help="Database URL (sqlite:///file.db or postgresql://...).")] = DEFAULT_URL,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    nodes: Annotated[Path | None, typer.Option(help="Dry run: the cluster's nodes, as kubectl get nodes -o json prints them.")] = None,
    pods: Annotated[Path | None, typer.Option(help="Dry run: its pods, as kubectl get pods -A -o json prints them.")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="Follow a real cluster with this kubeconfig.")] = None,
    in_cluster: Annotated[bool, typer.Option("--in-cluster", help="Follow the cluster slotwise runs in (its service account).")] = False,
    managed: Annotated[str, typer.Option(help="Namespaces whose pods the webhooks gate and check, comma-separated, or '*' for all but the system ones (default: none).")] = "",
    tls_cert: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate, reloaded when the file changes (webhooks require TLS).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The certificate's private key.")] = None,
    mig_token_file: Annotated[Path | None, typer.Option(help="Accept MIG layout reports from node agents sending this token, and place MIG pods on the instances they report.")] = None,
    burst: Annotated[Path | None, typer.Option(help="Let the admission loop overflow waiting work as this burst YAML says.")] = None,
    classes: Annotated[Path | None, typer.Option(help="Workload class overrides (YAML, e.g. serving: {gpu_pack: true}).")] = None,
    quota_config: Annotated[Path | None, typer.Option(help="Make this pool configuration (YAML, as slotwise quota export writes) the whole quota configuration at start, as slotwise quota import does.")] = None,
    admin_token_file: Annotated[Path | None, typer.Option(help=f"Keep the token in this file (a Kubernetes Secret) as the REST API's admin token {BOOTSTRAP_TOKEN!r}; a changed file replaces it at the next start.")] = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (kube-scheduler calls the extender twice per pod: off by default).")] = False,
) -> None:
    """Run the slotwise service: the quota REST API (/quota), the scheduler extender (/extender),
    the admission webhooks (/webhooks), MIG layout reports (/mig), /metrics, /healthz and /readyz."""
    import gc

    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from burst.targets import burst_from_yaml
    from mig.store import MemoryLayoutStore, ReportedFleet
    from quota.store import Store
    from scheduler.model import k8s_json
    from scheduler.placement.classes import DEFAULT_CLASSES, classes_from_yaml
    from scheduler.server.app import create_app
    from scheduler.server.metrics import ServiceMetrics
    from scheduler.server.tls import serving_tls

    try:
        tls = serving_tls(tls_cert, tls_key)
        store = Store(db)
        store.migrate()
        _seed(store, quota_config, admin_token_file)
        cache = _cache(nodes, pods, kubeconfig, in_cluster)
        mig_token = mig_token_file.read_text().strip() if mig_token_file else None
        burst_config = burst_from_yaml(burst.read_text()) if burst else None
        workload_classes = classes_from_yaml(classes.read_text()) if classes else DEFAULT_CLASSES
    except (ValueError, OSError, k8s_json.ModelError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)  # one line, however long the paths
        raise typer.Exit(2) from None
    except SQLAlchemyError as exc:  # the database cannot be reached or migrated
        console.print(f"[red]database error:[/red] {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    namespaces = [n.strip() for n in managed.split(",") if n.strip()]
    scope = (lambda _: True) if namespaces == ["*"] else namespaces
    metrics = ServiceMetrics()
    # One fleet for the report endpoint, the extender, the admission loop and the gauge.
    mig_fleet = ReportedFleet(MemoryLayoutStore()) if mig_token is not None else None
    app_ = create_app(store, cache=cache, managed=scope, mig_token=mig_token, mig_fleet=mig_fleet,
                      classes=workload_classes, metrics=metrics)
    loop = None
    if cache.kube is not None:  # a real cluster: decide gated pods and lift their gates
        from scheduler.server.admission_loop import AdmissionLoop

        loop = AdmissionLoop(cache, cache.kube, store, burst=burst_config, classes=workload_classes, metrics=metrics,
                             mig=mig_fleet)
        loop.start()
    gc.freeze()  # the app and a dry run's cache live as long as the service (ClusterCache._follow says why)
    try:
        uvicorn.run(app_, host=host, port=port, log_level="info", access_log=access_log,
                    ssl_context_factory=(lambda *_: tls.context) if tls else None)
    finally:
        if loop is not None:
            loop.stop()
        cache.stop()


@app.command()
def policies() -> None:
    """List the placement policies a profile can use."""
    from scheduler.placement.profile import profile_names

    for name in profile_names():
        console.print(name)


@app.command()
def place(
    nodes: Annotated[Path | None, typer.Option(help="Nodes: kubectl JSON (NodeList) or openb CSV. Default: a synthetic cluster.")] = None,
    pods: Annotated[Path | None, typer.Option(help="Pods: kubectl JSON (PodList) or openb CSV. Default: a synthetic workload.")] = None,
    policy: Annotated[str, typer.Option(help="Placement profile or policy (slotwise policies lists them).")] = "default",
    seed: Annotated[int, typer.Option(help="Seed for the synthetic workload and random policies.")] = 0,
    count: Annotated[int, typer.Option(min=1, help="How many synthetic pods to generate.")] = 300,
    show: Annotated[int, typer.Option(min=0, help="How many decisions to print.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print every decision as a JSON line instead.")] = False,
) -> None:
    """Place pending pods one by one on a cluster and report where they went and why not."""
    from scheduler.model.resources import MILLI_PER_GPU
    from scheduler.model.snapshot import Snapshot
    from scheduler.model.sources import read_nodes, read_pods
    from scheduler.placement.decision import Placement
    from scheduler.placement.engine import Placer
    from scheduler.placement.profile import build_profile
    from scheduler.placement.workload import TargetWorkload
    from simulator.generate import synthetic_cluster, synthetic_workload

    try:
        node_list = read_nodes(nodes) if nodes else synthetic_cluster()
        pod_list = read_pods(pods) if pods else synthetic_workload(count, seed)
        snap = Snapshot(node_list, pod_list)
        pending = [p for p in pod_list if p.node_name is None]
        placer = Placer(build_profile(policy, seed=seed, workload=TargetWorkload.from_pods(pod_list) if pod_list else None))
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    decisions, started = [], time.perf_counter()
    for pod in pending:
        decision = placer.decide(snap, pod)
        if isinstance(decision, Placement):
            snap.assign(pod, decision.node_index, decision.gpus)
        decisions.append(decision)
    elapsed = time.perf_counter() - started

    if as_json:
        for d in decisions:
            placed = isinstance(d, Placement)
            record = {"pod": d.pod.key, "node": d.node if placed else None, "gpus": list(d.gpus) if placed else [],
                      "reason": None if placed else d.message}
            typer.echo(json.dumps(record))
        return
    for d in decisions[:show]:
        console.print(str(d), highlight=False)
    placed = [d for d in decisions if isinstance(d, Placement)]
    total_gpu = int(snap.gpu_count.sum()) * MILLI_PER_GPU
    table = Table(title=f"{len(pending)} pods on {len(snap)} nodes, profile {policy}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("placed", f"{len(placed)}")
    table.add_row("unschedulable", f"{len(decisions) - len(placed)}")
    table.add_row("GPU allocated", f"{(total_gpu - int(snap.gpu_idle.sum())) / max(total_gpu, 1):.1%}")
    table.add_row("GPUs wholly idle", f"{int((snap.gpu_free == MILLI_PER_GPU).sum())}")
    table.add_row("nodes in use", f"{len({a.node for a in snap.assignments.values()})}")
    table.add_row("mean decision time", f"{1000 * elapsed / max(len(decisions), 1):.2f} ms")
    console.print(table)
    reasons = Counter(d.message.split(": ", 1)[-1] for d in decisions if not isinstance(d, Placement))
    for reason, n in reasons.most_common(5):
        console.print(f"{n} pods: {reason}", highlight=False)


if __name__ == "__main__":
    app()
