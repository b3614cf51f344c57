"""Two replicas of slotwise behind the Service, electing their leader with a Lease, on one
PostgreSQL database (SQLite where no server is given), reached through proxies that inject
faults: the leader killed mid-gang and mid-reclaim, connections to the API server dropped over and
over, the database gone. Nothing is lost: no gang half-admitted, no charge twice, every eviction
sent, every gated pod decided, and pod creation goes on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from e2e.cluster import NAMESPACE, Cluster
from e2e.proxy import Proxy
from quota.store import Store
from slotwise.server.admission_loop import RELEASE_GRACE_S
from slotwise.server.leader import Timings
from tests.e2e_cluster import bound, namespace, pod, pods, wait_for
from tests.quota_fixtures import POSTGRES_ENV, postgres_database

pytest_plugins = ["tests.e2e_cluster"]
pytestmark = pytest.mark.e2e

REPLICAS = ("slotwise-a", "slotwise-b")
#: The replicas' own database holds these pools (the rest of the suite's are not needed): the
#: taker borrows the lender's idle GPUs, the only GPUs anyone lends.
POOLS = """
reclaim: {grace: 2s}
pools:
  - name: failover
    guaranteed: {cpu: "64", memory: 256Gi}
  - name: lender
    guaranteed: {cpu: "64", memory: 512Gi, nvidia.com/gpu: "8"}
    shareable: {nvidia.com/gpu: "8"}
  - name: taker
    guaranteed: {cpu: "64", memory: 512Gi}
    max: {nvidia.com/gpu: "8"}
"""
#: The longest a takeover may take after the leader dies: the lease duration as the follower
#: observed it, plus one retry period for that observation and one for the attempt.
TAKEOVER_S = Timings().duration_s + 2 * Timings().retry_s


@dataclass
class Pair:
    cluster: Cluster
    store: Store  # the database itself, not through the proxy
    database: Proxy | None  # between the replicas and PostgreSQL (None on SQLite)
    api: Proxy  # between the replicas and the API server
    kubeconfig: Path

    def leader(self) -> str:
        """The replica holding the Lease (its identity is its pod name, then a suffix)."""
        holder = self.cluster.kubectl("get", "lease", "slotwise", "-n", NAMESPACE,
                                      "-o", "jsonpath={.spec.holderIdentity}", check=False)
        return holder.rsplit("_", 1)[0]

    def start(self, name: str) -> None:
        self.cluster.start_slotwise(self.kubeconfig, name)

    def admits(self, subject: str) -> int:
        return sum(e.action == "admit" for e in self.store.audit(limit=5000, subject=subject))


@contextlib.contextmanager
def _database(cluster: Cluster) -> Iterator[tuple[str, Proxy | None]]:
    """PostgreSQL when the tests are given one (CI is), as a replicated deployment needs; else a
    SQLite file, which replicas on one host can share."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        yield f"sqlite:///{cluster.path('replicas.db')}", None
        return
    with contextlib.contextmanager(postgres_database)(base) as url:
        target = make_url(url)
        proxy = Proxy([target.port or 5432])
        try:
            yield target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
        finally:
            proxy.close()


@pytest.fixture(scope="module")
def pair(cluster: Cluster) -> Iterator[Pair]:
    api = Proxy([int(cluster.server.rsplit(":", 1)[1])])
    config = yaml.safe_load(cluster.path("slotwise.kubeconfig").read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{api.port}"
    kubeconfig = cluster.path("slotwise-via-proxy.kubeconfig")
    kubeconfig.write_text(yaml.safe_dump(config))
    single, pools = cluster.db_url, cluster.path("pools.yaml").read_text()
    with _database(cluster) as (url, database):
        cluster.stop_slotwise()
        cluster.db_url = url
        cluster.path("pools.yaml").write_text(POOLS)
        direct = Store(url if database is None else
                       make_url(url).set(port=database.backends[0]).render_as_string(hide_password=False))
        pair = Pair(cluster, direct, database, api, kubeconfig)
        try:
            for name in REPLICAS:
                pair.start(name)
            wait_for("a leader", lambda: pair.leader() in REPLICAS)
            yield pair
        finally:
            for name in list(cluster.replicas):
                cluster.stop_slotwise(name)
            direct.close()
            api.close()
            cluster.db_url = single
            cluster.path("pools.yaml").write_text(pools)
            cluster.start_slotwise()


@pytest.fixture(autouse=True)
def both_replicas(pair: Pair) -> None:
    """Each scenario starts with both replicas up and one leading, whatever the one before left."""
    for name in REPLICAS:
        if name not in pair.cluster.replicas:
            pair.start(name)
    wait_for("a leader", lambda: pair.leader() in REPLICAS)


def gated(pod_object: dict) -> bool:
    return bool(pod_object["spec"].get("schedulingGates"))


def kill_leader(pair: Pair, leader: str | None = None) -> tuple[str, float]:
    """SIGKILL the leader (``leader``, when the caller read it beforehand): its name and when."""
    leader = leader or pair.leader()
    pair.cluster.kill_slotwise(leader)
    return leader, time.monotonic()


def takeover(pair: Pair, dead: str, killed: float) -> float:
    """Seconds from the kill of ``dead`` until the other replica holds the lease."""
    wait_for("the other replica to take the lease", lambda: pair.leader() not in ("", dead), TAKEOVER_S + 10)
    return time.monotonic() - killed


def readiness(cluster: Cluster, name: str) -> dict:
    """What one replica's /readyz says."""
    context = ssl.create_default_context(cafile=str(cluster.path("ca.crt")))
    with urllib.request.urlopen(f"https://127.0.0.1:{cluster.replicas[name]}/readyz", context=context, timeout=5) as r:
        return json.load(r)


def fleet(cluster: Cluster, name: str, nodes: int) -> dict[str, str]:
    """``nodes`` CPU nodes labelled as fleet ``name``: the node selector that keeps pods on them."""
    selector = {"e2e/fleet": name}
    for k in range(nodes):
        cluster.add_node(f"{name}-{k}", {"cpu": "16", "memory": "64Gi"}, selector)
    return selector


def test_the_leader_killed_mid_gang_the_other_replica_takes_over_and_finishes(pair: Pair):
    cluster = pair.cluster
    nodes = fleet(cluster, "failover", 3)
    ns = namespace(cluster, "failover", managed=True)
    members = [f"rank-{k}" for k in range(24)]
    leading = pair.leader()  # read now: killed the moment the placements are in the trail
    cluster.apply([pod(n, ns, annotations={"slotwise.io/gang": "allreduce", "slotwise.io/gang-min-members": "24"},
                       node_selector=nodes) for n in members])
    deadline = time.monotonic() + 90
    while sum(e.action == "place" for e in pair.store.audit(limit=200) if e.subject.startswith(f"{ns}/")) < 12:
        assert time.monotonic() < deadline, "the leader did not place half the gang within 90 s"
        time.sleep(0.01)
    # A cycle records its placements in one transaction, then lifts the gates eight at a time.
    leader, killed = kill_leader(pair, leading)
    assert any(gated(p) for p in pods(cluster, ns).values())  # killed mid-admission
    cluster.apply(pod("late", ns, node_selector=nodes))  # the other replica answers the webhooks meanwhile
    took = takeover(pair, leader, killed)
    print(f"takeover after SIGKILL: {took:.1f} s")
    assert took <= TAKEOVER_S + 1  # the lease is polled every 0.5 s here
    homes = bound(cluster, ns, [*members, "late"])
    assert not any(gated(p) for p in pods(cluster, ns).values())
    assert pair.admits(f"{ns}/allreduce") == 1 and pair.admits(f"{ns}/late") == 1
    [charge] = [w for w in pair.store.ledger().charged() if w.key == f"{ns}/allreduce"]
    assert charge.charge["cpu"] == 24_000
    last_placed: dict[str, str] = {}
    for e in reversed(pair.store.audit(limit=5000)):  # oldest first: the last decision for a pod wins
        if e.action == "place" and e.subject.startswith(f"{ns}/"):
            last_placed[e.subject.split("/", 1)[1]] = e.detail["node"]
    assert last_placed == homes


def test_the_leader_killed_mid_reclaim_the_next_one_sends_the_evictions(pair: Pair):
    """The victims are marked in the database when the reclaim is decided; a budget refuses their
    eviction until the leader is dead. The next leader evicts them and the owner runs."""
    cluster = pair.cluster
    gpu_node = {"e2e/fleet": "lend"}
    cluster.add_node("lend-0", {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"}, gpu_node)
    lender, taker = namespace(cluster, "lender", managed=True), namespace(cluster, "taker", managed=True)
    borrowers = ["borrow-0", "borrow-1"]
    cluster.apply([pod(n, taker, gpus=4, labels={"app": "borrow"}, node_selector=gpu_node) for n in borrowers])
    bound(cluster, taker, borrowers)
    cluster.apply({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "hold", "namespace": taker},
                   "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "borrow"}}}})
    # Until the budget counts them healthy, the Eviction API lets pods that are not ready go.
    wait_for("the budget to count both pods", lambda: json.loads(cluster.kubectl(
        "get", "pdb", "hold", "-n", taker, "-o", "json")).get("status", {}).get("currentHealthy") == 2)
    cluster.apply(pod("owner", lender, gpus=8, node_selector=gpu_node))
    wait_for("the reclaim decided", lambda: sum(e.action == "evict" for e in pair.store.audit(limit=200)
                                                if e.subject.startswith(f"{taker}/")) == 2)
    wait_for("the budget refusing the evictions", lambda: "SlotwiseEvictionRefused" in cluster.kubectl(
        "get", "events", "-n", taker, "-o", "jsonpath={.items[*].reason}"))
    leader, killed = kill_leader(pair)
    cluster.kubectl("delete", "pdb", "hold", "-n", taker)
    took = takeover(pair, leader, killed)
    bound(cluster, lender, ["owner"], timeout=TAKEOVER_S + 60)
    wait_for("the borrowers gone", lambda: not pods(cluster, taker))
    print(f"takeover mid-reclaim: {took:.1f} s; owner bound {time.monotonic() - killed:.1f} s after the kill")
    decisions = [e.action for e in pair.store.audit(limit=5000, subject=f"{lender}/owner")]
    assert decisions.count("reclaim") == 1 and "admit" not in decisions  # charged once
    assert f"{lender}/owner" in {w.key for w in pair.store.ledger().charged()}
    # A workload admitted less than a minute ago is not taken as gone: its charge goes back after.
    wait_for("the borrowers' charges given back", lambda: not {f"{taker}/{n}" for n in borrowers} & {
        w.key for w in pair.store.ledger().charged()}, RELEASE_GRACE_S + 30)


def test_a_leader_stopped_as_a_rollout_does_hands_the_lease_over_at_once(pair: Pair):
    leader = pair.leader()
    stopped = time.monotonic()
    pair.cluster.stop_slotwise(leader)  # SIGTERM: requests finish, the loop stops, the lease is released
    took = takeover(pair, leader, stopped)
    print(f"handover after SIGTERM: {took:.1f} s")
    assert took <= 2 * Timings().retry_s + 1  # the follower's next try, not the lease duration


def test_a_paused_leader_that_resumes_after_losing_the_lease_decides_nothing(pair: Pair):
    cluster = pair.cluster
    leader = pair.leader()
    paused = cluster.processes[leader]

    def epochs() -> list[int]:
        return [e.detail["epoch"] for e in pair.store.audit(limit=5000) if e.action == "lead"]

    before = epochs()
    paused.send_signal(signal.SIGSTOP)  # a frozen VM, a long stop-the-world pause
    try:
        takeover(pair, leader, time.monotonic())
        taken = wait_for("the new leader's epoch", lambda: (e := epochs()) != before and e)  # at its first cycle
    finally:
        paused.send_signal(signal.SIGCONT)
    log = cluster.path(f"{leader}.log")
    wait_for("the resumed replica to say it stopped leading",
             lambda: "stopped leading" in log.read_text(errors="replace"), 30)
    time.sleep(2 * Timings().retry_s)
    assert pair.leader() != leader  # it did not take the lease back
    assert epochs() == taken  # nor an epoch
    ns = namespace(cluster, "failover", managed=True)
    cluster.apply(pod("after-pause", ns, node_selector=fleet(cluster, "paused", 1)))
    bound(cluster, ns, ["after-pause"])
    assert pair.admits(f"{ns}/after-pause") == 1


def test_connections_to_the_api_server_dropped_over_and_over_lose_nothing(pair: Pair):
    cluster = pair.cluster
    nodes = fleet(cluster, "flaky", 2)
    ns = namespace(cluster, "failover", managed=True)
    stop = threading.Event()

    def cut_every_second() -> None:
        while not stop.wait(1.0):
            pair.api.cut()

    cutter = threading.Thread(target=cut_every_second, daemon=True)
    cutter.start()
    try:
        members = [f"flaky-rank-{k}" for k in range(12)]
        singles = [f"flaky-{k}" for k in range(6)]
        cluster.apply([pod(n, ns, annotations={"slotwise.io/gang": "flaky", "slotwise.io/gang-min-members": "12"},
                           node_selector=nodes) for n in members])
        for name in singles:
            cluster.apply(pod(name, ns, node_selector=nodes))
            time.sleep(1)
        bound(cluster, ns, [*members, *singles], timeout=150)
        print(f"{len(members) + len(singles)} pods bound through {pair.api.cuts} cuts")
    finally:
        stop.set()
        cutter.join()
    assert pair.api.cuts >= len(singles) - 1  # the singles alone are created over as many seconds
    assert pair.admits(f"{ns}/flaky") == 1
    assert all(pair.admits(f"{ns}/{name}") == 1 for name in singles)
    assert not any(gated(p) for p in pods(cluster, ns).values())


def test_with_the_database_gone_pods_are_still_created_and_decided_once_it_is_back(pair: Pair):
    if pair.database is None:
        pytest.skip(f"the outage is injected between slotwise and PostgreSQL: set {POSTGRES_ENV}")
    cluster = pair.cluster
    nodes = fleet(cluster, "outage", 1)
    free = namespace(cluster, "outage-free", managed=False)
    ns = namespace(cluster, "failover", managed=True)
    pair.database.refusing = True
    pair.database.cut()
    try:
        cluster.apply(pod("free", free, node_selector=nodes))
        cluster.apply(pod("waits", ns, node_selector=nodes))  # admitted with a warning, gated
        bound(cluster, free, ["free"])
        for name in REPLICAS:  # both stay in the Service, saying what is missing
            ready = readiness(cluster, name)
            assert ready["status"] == "ready" and ready["database"].startswith("unavailable"), ready
        time.sleep(5)
        assert gated(pods(cluster, ns)["waits"])
    finally:
        pair.database.refusing = False
    back = time.monotonic()
    bound(cluster, ns, ["waits"])
    print(f"gated pod bound {time.monotonic() - back:.1f} s after the database came back")
    assert pair.admits(f"{ns}/waits") == 1
