"""``slotwise serve``: the service, following a cluster (or a dry run's files)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from quota.database import DEFAULT_URL
from slotwise.console import failure, make_console

# serve imports the service (FastAPI, the Kubernetes client, SQLAlchemy) when it runs.
if TYPE_CHECKING:
    from quota.store import Store
    from slotwise.server.cache import ClusterCache
    from slotwise.server.kube import Kube
    from slotwise.server.leader import Elector

console = make_console()


def _cache(nodes: Path | None, pods: Path | None, kubeconfig: Path | None, in_cluster: bool) -> ClusterCache:
    """The cluster the service decides on: a real one through the Kubernetes API (list and
    watch), or, for a dry run, the objects in ``kubectl get -o json`` files."""
    from scheduler.model import k8s_json
    from slotwise.server.cache import ClusterCache

    if kubeconfig is not None or in_cluster:
        from kubernetes import client, config

        from slotwise.server.kube import Kube

        loaded = client.Configuration()
        if in_cluster:
            config.load_incluster_config(client_configuration=loaded)
        else:
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=loaded)
        cache = ClusterCache(Kube.configured(loaded))
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


def _loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: it may resolve anywhere
        return False


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


#: How long in-flight requests get to finish on SIGTERM (the pod's grace period is 30 s).
GRACEFUL_SHUTDOWN_S = 15
#: How long an idle keep-alive connection stays open: longer than Go's transport keeps one idle
#: (90 s), so that kube-apiserver and kube-scheduler close it first. With uvicorn's 5 s, a request
#: sent on a connection the server was closing failed with EOF (a refused pod under Fail).
KEEP_ALIVE_S = 120


@dataclass
class _Election:
    """The elector and the thread that keeps trying or renewing its lease."""

    elector: Elector
    stopping: threading.Event
    thread: threading.Thread

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


def _election(kube: Kube, lease: str, namespace: str) -> _Election:
    """Start campaigning for ``lease`` (NAME or NAMESPACE/NAME) as this pod, with a suffix that
    tells two processes of one host apart, as client-go's identities do."""
    from slotwise.server.kube import KubeLease
    from slotwise.server.leader import Elector

    lease_namespace, _, name = lease.rpartition("/")
    identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4()}"
    elector = Elector(KubeLease(kube, lease_namespace or namespace, name), identity)
    stopping = threading.Event()
    thread = threading.Thread(target=elector.run, args=(stopping,), daemon=True, name="leader-election")
    thread.start()
    return _Election(elector, stopping, thread)


def _seed(store: Store, quota_config: Path | None, admin_token_file: Path | None) -> None:
    """What an in-cluster start brings from its ConfigMap and Secret: the pools and an admin token."""
    from quota.config import config_from_yaml

    if quota_config is not None:
        changes = store.replace_config(config_from_yaml(quota_config.read_text()), SERVE_ACTOR)
        console.print(f"{quota_config}: {len(changes)} change(s)" if changes else f"{quota_config}: no changes", highlight=False)
    if admin_token_file is not None:
        if store.keep_admin_token(BOOTSTRAP_TOKEN, admin_token_file.read_text().strip(), SERVE_ACTOR):
            console.print(f"admin token {BOOTSTRAP_TOKEN!r} set from {admin_token_file}", highlight=False)


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
    client_ca: Annotated[Path | None, typer.Option(help="Serve the webhooks and the extender on --client-cert-port only, to callers presenting a certificate this CA signed (kube-apiserver, kube-scheduler); reloaded when the file changes. On the main port they answer 403.")] = None,
    client_cert_port: Annotated[int, typer.Option(help="The port that requires client certificates (with --client-ca).")] = 9443,
    metrics_token_file: Annotated[Path | None, typer.Option(help="Let Prometheus scrape /metrics with the bearer token in this file (an admin token works too; without either, /metrics answers 401).")] = None,
    mig_agents: Annotated[str | None, typer.Option(help="Accept MIG layout reports from node agents running as this ServiceAccount (NAMESPACE/NAME), each with its own projected token (audience slotwise) and for its own node only, checked with a TokenReview. Needs a cluster to follow.")] = None,
    mig_token_file: Annotated[Path | None, typer.Option(help="Accept MIG layout reports from node agents sending this token, and place MIG pods on the instances they report.")] = None,
    profile: Annotated[str, typer.Option(help="The placement profile the admission loop and the extender decide with (slotwise simulate --help lists them); fgd measures fragmentation against the shapes of the pods the cluster holds.")] = "default",
    burst: Annotated[Path | None, typer.Option(help="Let the admission loop overflow waiting work as this burst YAML says.")] = None,
    classes: Annotated[Path | None, typer.Option(help="Workload class overrides (YAML, e.g. serving: {gpu_pack: true}).")] = None,
    quota_config: Annotated[Path | None, typer.Option(help="Make this pool configuration (YAML, as slotwise quota export writes) the whole quota configuration at start, as slotwise quota import does.")] = None,
    admin_token_file: Annotated[Path | None, typer.Option(help=f"Keep the token in this file (a Kubernetes Secret) as the REST API's admin token {BOOTSTRAP_TOKEN!r}; a changed file replaces it at the next start.")] = None,
    gpu_reservation_image: Annotated[str | None, typer.Option(help="The image GPU share reservation pods run (it needs the slotwise command; default: slotwise's own release image). They run in slotwise's namespace (POD_NAMESPACE).")] = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (kube-scheduler calls the extender twice per pod: off by default).")] = False,
    leader_elect: Annotated[bool, typer.Option("--leader-elect/--no-leader-elect", help="Following a cluster: run the admission loop only while holding the Lease (several replicas: one decides, all serve the webhooks and the extender).")] = True,
    lease: Annotated[str, typer.Option(help="The Lease replicas elect their leader with, NAMESPACE/NAME (default namespace: POD_NAMESPACE, else slotwise-system).")] = "slotwise",
    insecure_http: Annotated[bool, typer.Option("--insecure-http", help="Serve plain HTTP on an address other than loopback (behind a proxy that terminates TLS); refused otherwise.")] = False,
) -> None:
    """Run the slotwise service: the quota REST API (/quota), the scheduler extender (/extender),
    the admission webhooks (/webhooks), MIG layout reports (/mig), /metrics, /healthz and /readyz."""
    import gc
    import logging

    # What the service decides (leadership, evictions refused, cycles that failed) at INFO;
    # libraries' warnings only.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("slotwise").setLevel(logging.INFO)

    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from burst.targets import burst_from_yaml
    from mig.store import ReportedFleet
    from quota.store import MIN_TOKEN_CHARS, Store
    from scheduler.model import k8s_json
    from scheduler.placement.classes import DEFAULT_CLASSES, classes_from_yaml
    from scheduler.placement.profile import profile_names
    from slotwise.server.agent_identity import AgentIdentity
    from slotwise.server.app import create_app, verified_callers
    from slotwise.server.metrics import ServiceMetrics
    from slotwise.server.mig_layouts import StoredLayouts
    from slotwise.server.listeners import run
    from slotwise.server.tls import serving_tls, verifying_tls

    try:
        tls = serving_tls(tls_cert, tls_key)
        verifying = verifying_tls(tls, client_ca)
        if tls is None and not insecure_http and not _loopback(host):
            raise ValueError(f"refusing plain HTTP on {host}: the webhooks, the extender and the API's bearer tokens "
                             "would cross the network readable and forgeable; give --tls-cert and --tls-key, or "
                             "--insecure-http behind a proxy that terminates TLS")
        if profile not in profile_names():
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(profile_names())}")
        store = Store(db)
        store.migrate()
        _seed(store, quota_config, admin_token_file)
        cache = _cache(nodes, pods, kubeconfig, in_cluster)
        mig_token = mig_token_file.read_text().strip() if mig_token_file else None
        metrics_token = metrics_token_file.read_text().strip() if metrics_token_file else None
        if metrics_token is not None and len(metrics_token) < MIN_TOKEN_CHARS:
            raise ValueError(f"{metrics_token_file}: a token of at least {MIN_TOKEN_CHARS} characters is needed")
        burst_config = burst_from_yaml(burst.read_text()) if burst else None
        workload_classes = classes_from_yaml(classes.read_text()) if classes else DEFAULT_CLASSES
        if mig_agents is not None and cache.kube is None:
            raise ValueError("--mig-agents needs a cluster to review the agents' tokens: give --kubeconfig or --in-cluster")
        agents = AgentIdentity(cache.kube, mig_agents) if mig_agents is not None and cache.kube is not None else None
    except (ValueError, OSError, k8s_json.ModelError) as exc:
        raise failure(console, exc) from None
    except SQLAlchemyError as exc:  # the database cannot be reached or migrated
        console.print(f"[red]database error:[/red] {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    namespaces = [n.strip() for n in managed.split(",") if n.strip()]
    scope = (lambda _: True) if namespaces == ["*"] else namespaces
    metrics = ServiceMetrics()
    # One fleet for the report endpoint, the extender, the admission loop and the gauge, over the
    # reports kept in the database: every replica sees them all, and a restart loses none.
    mig_fleet = ReportedFleet(StoredLayouts(store)) if mig_token is not None or agents is not None else None
    app_ = create_app(store, cache=cache, managed=scope, mig_token=mig_token, mig_fleet=mig_fleet,
                      classes=workload_classes, metrics=metrics, metrics_token=metrics_token, mig_agents=agents,
                      client_cert_port=client_cert_port if verifying else None, profile=profile)
    loop = election = None
    if cache.kube is not None:  # a real cluster: decide gated pods and lift their gates
        from slotwise.server.admission_loop import AdmissionLoop
        from slotwise.server.gpu_shares import ReservationSettings

        defaults = ReservationSettings()
        namespace = os.environ.get("POD_NAMESPACE", defaults.namespace)
        reservations = ReservationSettings(namespace, gpu_reservation_image or defaults.image)
        election = _election(cache.kube, lease, namespace) if leader_elect else None
        loop = AdmissionLoop(cache, cache.kube, store, profile, burst=burst_config, classes=workload_classes, metrics=metrics,
                             mig=mig_fleet, reservations=reservations, leader=election.elector if election else None)
        loop.start()
    gc.freeze()  # the app and a dry run's cache live as long as the service (ClusterCache._follow says why)
    # uvicorn re-raises the SIGTERM it shut down on, once it has: as SystemExit rather than the
    # default action, so that the loop stops and the lease is released below before the exit.
    signal.signal(signal.SIGTERM, _exit)
    try:
        # On SIGTERM uvicorn stops accepting and finishes the requests in flight (the Deployment's
        # preStop pause has taken the pod out of the Service first).
        options = {"host": host, "log_level": "info", "access_log": access_log,
                   "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S, "timeout_keep_alive": KEEP_ALIVE_S}
        main = uvicorn.Config(app_, port=port, ssl_context_factory=(lambda *_: tls.context) if tls else None, **options)
        run(main, *([uvicorn.Config(verified_callers(app_), port=client_cert_port, lifespan="off",
                                    ssl_context_factory=lambda *_: verifying.context, **options)] if verifying else []))
    finally:
        if loop is not None:
            loop.stop()
        if election is not None:
            election.stop()  # after the loop: the lease goes once this replica has stopped deciding
        cache.stop(timeout=0)  # its watches block on their streams: daemon threads, gone with the process
