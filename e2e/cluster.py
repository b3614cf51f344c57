"""A real Kubernetes control plane on loopback, with slotwise deployed as deploy/ describes it.

etcd (Debian's ``etcd-server``), kube-apiserver, kube-controller-manager and kube-scheduler (built
from Go modules by ``e2e/build.sh``), kwok playing the kubelets, and ``slotwise serve`` running
with the token of the ServiceAccount deploy/ creates, so its least-privilege RBAC is what the
API server enforces. The webhook configurations and kube-scheduler's extender stanza are the
ones in deploy/, with the Service's address rewritten to loopback and nothing else changed; a
TCP proxy there plays the Service (``e2e/proxy.py``), so replicas of slotwise come and go behind it.

    python3 -m e2e.cluster up       # start everything; prints how to reach it; Ctrl-C stops it

The end-to-end tests start one per session (tests/e2e_cluster.py).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from e2e.proxy import Proxy

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "base"
NAMESPACE = "slotwise-system"
#: Nodes kwok plays carry this annotation; kwok manages no other node.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
START_TIMEOUT_S = 120.0


class ClusterError(RuntimeError):
    """The cluster could not be built or started; the message says which part and where its log is."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build() -> Path:
    """The folder holding kube-apiserver, kube-controller-manager, kube-scheduler and kwok, built
    (once per version) by e2e/build.sh."""
    result = subprocess.run(["bash", str(ROOT / "e2e" / "build.sh")], capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"e2e/build.sh failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def _etcd() -> str:
    found = shutil.which("etcd")
    if found is None:
        raise ClusterError("etcd is not installed: apt-get install etcd-server")
    return found


@dataclass
class Cluster:
    """Everything runs under ``workdir``: certificates, kubeconfigs, each component's log."""

    workdir: Path
    bin: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    #: What ``slotwise serve`` is started with besides what deploy/ gives it (kept across restarts).
    serve_options: list[str] = field(default_factory=list)
    #: The replicas of slotwise running, by name: the port each serves its API on, and the one
    #: that requires client certificates (the webhooks and the extender).
    replicas: dict[str, int] = field(default_factory=dict)
    verified_ports: dict[str, int] = field(default_factory=dict)
    #: The Service in front of them: its API port, and the one the webhooks and kube-scheduler's
    #: extender call with their client certificates.
    front: Proxy = field(default_factory=Proxy)
    control_plane: Proxy = field(default_factory=Proxy)
    #: The database the replicas share.
    db_url: str = ""
    #: False: kube-scheduler alone, no slotwise, no webhooks, no extender (benchmarks/cluster.py).
    with_slotwise: bool = True
    #: kube-scheduler's requests per second to the API server (None: its default, 50).
    scheduler_qps: float | None = None

    # Certificates and kubeconfigs -------------------------------------------------------------
    def _pki(self) -> None:
        self.ca = trustme.CA()
        self.ca.cert_pem.write_to_path(str(self.path("ca.crt")))
        serving = self.ca.issue_cert("127.0.0.1", "localhost", "kubernetes.default.svc")
        serving.private_key_pem.write_to_path(str(self.path("serving.key")))
        serving.cert_chain_pems[0].write_to_path(str(self.path("serving.crt")))
        admin = self.ca.issue_cert("admin", common_name="admin", organization_name="system:masters")
        admin.private_key_pem.write_to_path(str(self.path("admin.key")))
        admin.cert_chain_pems[0].write_to_path(str(self.path("admin.crt")))
        # The client CA of deploy/'s slotwise-client-ca, and the certificates it signs for the control plane.
        client_ca = trustme.CA()
        client_ca.cert_pem.write_to_path(str(self.path("client-ca.crt")))
        for name in ("kube-apiserver", "kube-scheduler"):
            client = client_ca.issue_cert(name, common_name=name)
            client.private_key_pem.write_to_path(str(self.path(f"{name}-client.key")))
            client.cert_chain_pems[0].write_to_path(str(self.path(f"{name}-client.crt")))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.path("sa.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        self.path("sa.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                      serialization.PublicFormat.SubjectPublicKeyInfo))

    def kubeconfig(self, name: str, user: Mapping[str, str]) -> Path:
        path = self.path(f"{name}.kubeconfig")
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": self.server,
                                                     "certificate-authority": str(self.path("ca.crt"))}}],
            "users": [{"name": name, "user": dict(user)}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": name}}],
        }))
        return path

    def path(self, name: str) -> Path:
        return self.workdir / name

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def admin(self) -> Path:
        return self.path("admin.kubeconfig")

    # Processes -----------------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        log = self.path(f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                                env={**os.environ, **(env or {})}, start_new_session=True)

    def _wait(self, name: str, ready: Any, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise ClusterError(f"{name} exited ({process.returncode}); its log: {self.path(name + '.log')}\n"
                                   + self.path(f"{name}.log").read_text(errors="replace")[-3000:])
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.2)
        raise ClusterError(f"{name} not ready within {timeout:.0f} s; its log: {self.path(name + '.log')}")

    def _get(self, url: str, *, admin: bool = True, verify: bool = True) -> int:
        """The status of a GET against a component: checked against the cluster's CA (``verify``
        False: kube-scheduler's own self-signed serving cert), as admin or anonymously."""
        context = ssl.create_default_context(cafile=str(self.path("ca.crt")))
        if not verify:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if admin:
            context.load_cert_chain(self.path("admin.crt"), self.path("admin.key"))
        with urllib.request.urlopen(url, context=context, timeout=2) as reply:
            return reply.status

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(["kubectl", "--kubeconfig", str(self.admin), *args], input=input,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def apply(self, objects: list[dict[str, Any]] | dict[str, Any]) -> None:
        items = objects if isinstance(objects, list) else [objects]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    def start(self) -> None:
        self._pki()
        for name in ("etcd", "etcd-peer", "apiserver", "scheduler"):
            self.ports[name] = free_port()
        self.db_url = f"sqlite:///{self.path('slotwise.db')}"
        self._start("etcd", [_etcd(), "--data-dir", str(self.path("etcd")), "--listen-client-urls",
                             f"http://127.0.0.1:{self.ports['etcd']}", "--advertise-client-urls",
                             f"http://127.0.0.1:{self.ports['etcd']}", "--listen-peer-urls",
                             f"http://127.0.0.1:{self.ports['etcd-peer']}"], env={"ETCD_UNSUPPORTED_ARCH": "amd64"})
        self._start("kube-apiserver", [
            str(self.bin / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={self.path('serving.crt')}", f"--tls-private-key-file={self.path('serving.key')}",
            f"--client-ca-file={self.path('ca.crt')}", f"--service-account-key-file={self.path('sa.pub')}",
            f"--service-account-signing-key-file={self.path('sa.key')}",
            "--service-account-issuer=https://kubernetes.default.svc", "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            f"--admission-control-config-file={self._admission_config()}",
            "--endpoint-reconciler-type=none"])  # the kubernetes Service may not point at loopback
        self.kubeconfig("admin", {"client-certificate": str(self.path("admin.crt")),
                                  "client-key": str(self.path("admin.key"))})
        self._wait("kube-apiserver", lambda: self._get(f"{self.server}/readyz") == 200)
        self._start("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"), f"--kubeconfig={self.admin}", "--leader-elect=false",
            f"--service-account-private-key-file={self.path('sa.key')}", f"--root-ca-file={self.path('ca.crt')}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--controllers=*",
            # Its client's default rate (20 requests/s) lifts the not-ready taint from about 9 new
            # nodes a second: 9 minutes for 5,000 nodes. Large clusters raise it likewise.
            "--kube-api-qps=200", "--kube-api-burst=400",
            # kwok's heartbeat comes every 4.5 to 5 minutes (kwok-node-heartbeat.yaml, without
            # leases), and later on a busy 2-core machine: creating 5,000 nodes, the first came
            # 10.4 minutes after a node's creation. A late one must not taint its node unreachable
            # (and evict its pods).
            "--node-monitor-grace-period=30m"])
        # The default ServiceAccount appears once the controller manager runs.
        self._wait("kube-controller-manager",
                   lambda: "default" in self.kubectl("get", "serviceaccount", "default", "-o", "name", check=False))
        self._start("kwok", [
            str(self.bin / "kwok"), f"--kubeconfig={self.admin}", "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
            "--cidr=10.0.0.1/16", "--node-ip=10.0.0.1", f"--config={self.bin / 'kwok-stages.yaml'}",
            f"--config={ROOT / 'e2e' / 'kwok-node-heartbeat.yaml'}"])
        self.add_node("kwok-probe", {"cpu": "1", "memory": "1Gi"})  # kwok plays nodes: one turns Ready
        self._wait("kwok", lambda: self.node_ready("kwok-probe"))
        self.kubectl("delete", "node", "kwok-probe")
        if self.with_slotwise:
            self._deploy_slotwise()
        self._start("kube-scheduler", [str(self.bin / "kube-scheduler"), f"--config={self._scheduler_config()}",
                                       "--bind-address=127.0.0.1", f"--secure-port={self.ports['scheduler']}"])
        self._wait("kube-scheduler", lambda: self._get(f"https://127.0.0.1:{self.ports['scheduler']}/healthz",
                                                       admin=False, verify=False) == 200)

    # slotwise, as deploy/ describes it ---------------------------------------------------------
    def _manifests(self, name: str) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]

    def _deploy_slotwise(self) -> None:
        for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "priorityclass.yaml"):
            self.apply(self._manifests(name))
        token = self.kubectl("create", "token", "slotwise", "-n", NAMESPACE, "--duration=24h").strip()
        kubeconfig = self.kubeconfig("slotwise", {"token": token})
        slotwise_tls = self.ca.issue_cert("127.0.0.1")
        slotwise_tls.private_key_pem.write_to_path(str(self.path("slotwise.key")))
        slotwise_tls.cert_chain_pems[0].write_to_path(str(self.path("slotwise.crt")))
        self.path("pools.yaml").write_text(self._manifests("pools.yaml")[0]["data"]["pools.yaml"])
        self.start_slotwise(kubeconfig)
        ca_bundle = self.ca.cert_pem.bytes()
        webhooks = copy.deepcopy(self._manifests("webhooks.yaml"))
        for configuration in webhooks:
            configuration["metadata"].pop("annotations", None)  # cert-manager's CA injection: done here
            for webhook in configuration["webhooks"]:
                path = webhook["clientConfig"]["service"]["path"]
                webhook["clientConfig"] = {"url": f"https://127.0.0.1:{self.control_plane.port}{path}",
                                           "caBundle": base64.b64encode(ca_bundle).decode()}
        self.apply(webhooks)

    @property
    def slotwise_url(self) -> str:
        """The Service: whichever replica accepts."""
        return f"https://127.0.0.1:{self.front.port}"

    def start_slotwise(self, kubeconfig: Path | None = None, name: str = "slotwise") -> None:
        """A replica of ``slotwise serve`` as the Deployment runs it, with its ServiceAccount's
        kubeconfig in place of --in-cluster, on :attr:`db_url`, with :attr:`serve_options`; it
        joins the front proxy (the Service) once ready. ``name`` is its pod name (its log, and its
        identity in the Lease)."""
        kubeconfig = kubeconfig or self.path("slotwise.kubeconfig")
        port = self.replicas[name] = free_port()
        verified = self.verified_ports[name] = free_port()
        args = [sys.executable, "-m", "slotwise.cli", "serve", "--host=127.0.0.1", f"--port={port}",
                f"--kubeconfig={kubeconfig}", "--managed=*", f"--tls-cert={self.path('slotwise.crt')}",
                f"--tls-key={self.path('slotwise.key')}", f"--client-ca={self.path('client-ca.crt')}",
                f"--client-cert-port={verified}", f"--quota-config={self.path('pools.yaml')}",
                f"--db={self.db_url}", *self.serve_options]
        # The tree under test, whatever copy of slotwise is installed (the CLI runs from the workdir).
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self._start(name, args, env={"PYTHONPATH": path, "POD_NAME": name})
        self._wait(name, lambda: self._get(f"https://127.0.0.1:{port}/readyz", admin=False) == 200)
        self.front.backends.append(port)
        self.control_plane.backends.append(verified)

    def use_pools(self, document: str) -> None:
        """Restart slotwise with this quota configuration, as an edited ConfigMap and a rollout would."""
        self.path("pools.yaml").write_text(document)
        self.restart_slotwise()

    def restart_slotwise(self) -> None:
        self.stop_slotwise()
        self.start_slotwise()

    def stop_slotwise(self, name: str = "slotwise") -> None:
        """SIGTERM, as the kubelet stops a pod: requests in flight finish and the lease is released."""
        self._end(name, signal.SIGTERM)

    def kill_slotwise(self, name: str = "slotwise") -> None:
        """SIGKILL: nothing is finished or released."""
        self._end(name, signal.SIGKILL)

    def _end(self, name: str, how: signal.Signals) -> None:
        self.front.backends.remove(self.replicas.pop(name))
        self.control_plane.backends.remove(self.verified_ports.pop(name))
        process = self.processes.pop(name)
        process.send_signal(how)
        process.wait(timeout=30)

    def _admission_config(self) -> Path:
        """deploy/apiserver's admission configuration: the webhooks' client certificate for the
        Service's address (here the proxy's) and the files written by :meth:`_pki`."""
        kubeconfig = yaml.safe_load((DEPLOY.parent / "apiserver" / "webhook-client.kubeconfig").read_text())
        [user] = kubeconfig["users"]
        user["name"] = f"127.0.0.1:{self.control_plane.port}"
        user["user"] = {"client-certificate": str(self.path("kube-apiserver-client.crt")),
                        "client-key": str(self.path("kube-apiserver-client.key"))}
        self.path("webhook-client.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        config = yaml.safe_load((DEPLOY.parent / "apiserver" / "admission-configuration.yaml").read_text())
        for plugin in config["plugins"]:
            plugin["configuration"]["kubeConfigFile"] = str(self.path("webhook-client.kubeconfig"))
        path = self.path("admission-configuration.yaml")
        path.write_text(yaml.safe_dump(config))
        return path

    def _scheduler_config(self) -> Path:
        config = yaml.safe_load((DEPLOY.parent / "scheduler" / "kube-scheduler-config.yaml").read_text())
        [extender] = config["extenders"]
        extender["urlPrefix"] = f"https://127.0.0.1:{self.control_plane.port}/extender"
        extender["tlsConfig"] = {"caFile": str(self.path("ca.crt")), "certFile": str(self.path("kube-scheduler-client.crt")),
                                 "keyFile": str(self.path("kube-scheduler-client.key"))}
        if not self.with_slotwise:
            del config["extenders"]
        config["clientConnection"] = {"kubeconfig": str(self.admin)}
        if self.scheduler_qps is not None:
            config["clientConnection"] |= {"qps": self.scheduler_qps, "burst": int(2 * self.scheduler_qps)}
        config["leaderElection"] = {"leaderElect": False}
        path = self.path("kube-scheduler-config.yaml")
        path.write_text(yaml.safe_dump(config))
        return path

    # Nodes --------------------------------------------------------------------------------------
    def add_node(self, name: str, allocatable: Mapping[str, str], labels: Mapping[str, str] | None = None,
                 taints: list[dict[str, str]] | None = None) -> None:
        """A node kwok plays: it heartbeats, and its pods run once bound."""
        capacity = {"pods": "110", **allocatable}
        self.apply({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
                                 "labels": {"kubernetes.io/hostname": name, "type": "kwok", **(labels or {})}},
                    "spec": {"taints": taints or []},
                    "status": {"capacity": capacity, "allocatable": capacity}})

    def node_ready(self, name: str) -> bool:
        status = self.kubectl("get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                              check=False)
        return status.strip() == "True"

    def stop(self) -> None:
        self.front.close()
        self.control_plane.close()
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()


@contextlib.contextmanager
def running(workdir: Path | None = None, **settings: Any) -> Iterator[Cluster]:
    """A started cluster, stopped (and its folder removed, unless given) on exit; ``settings``:
    :class:`Cluster` fields (``serve_options``, ``with_slotwise``, ``scheduler_qps``)."""
    _etcd()  # missing etcd is said before a build of minutes that could not be used
    binaries = build()
    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="slotwise-e2e-")) if own else workdir
    cluster = Cluster(folder, binaries, **settings)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if own:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    if sys.argv[1:] != ["up"]:
        sys.exit("usage: python3 -m e2e.cluster up")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the components too, as Ctrl-C does
    folder = Path(tempfile.mkdtemp(prefix="slotwise-e2e-"))
    started = time.monotonic()
    with running(folder) as cluster:
        print(f"cluster up in {time.monotonic() - started:.0f} s: export KUBECONFIG={cluster.admin}\n"
              f"slotwise: {cluster.slotwise_url}\nlogs: {folder}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
