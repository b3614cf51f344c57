"""The adapter's writes reuse one connection to the API server: each reply is read and its
connection handed back to the pool. Before, every write opened (and, in a cluster, TLS-handshook)
a connection of its own: a quarter of the admission loop's time at 25 pods/s. And as many
writes at once as the admission loop and the watches make keep their connections too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from slotwise.server.kube import Kube
from tests.stub_http import StubHandler, serving


class KeepAlive(StubHandler):
    protocol_version = "HTTP/1.1"
    connections: ClassVar[set[tuple[str, int]]] = set()
    requests: ClassVar[int] = 0

    def _answer(self) -> None:
        KeepAlive.connections.add(self.client_address)
        KeepAlive.requests += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(201 if self.command == "POST" else 200,
                   {"kind": "Status", "status": "Success", "metadata": {"resourceVersion": "1"}, "spec": {}})

    do_GET = do_POST = do_PATCH = do_DELETE = _answer


@pytest.fixture
def api() -> Iterator[str]:
    KeepAlive.connections, KeepAlive.requests = set(), 0
    with serving(KeepAlive) as url:
        yield url


def test_writes_and_reads_share_one_connection(api):
    kube = Kube.at(api)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}}
    for _ in range(5):
        kube.patch_pod("ns", "p", [{"op": "remove", "path": "/spec/schedulingGates/0"}])
        kube.set_pod_condition("ns", "p", {"type": "x", "status": "False"})
        kube.create_event("ns", "p", "uid", "Reason", "message")
        kube.create_pod("ns", pod)
        kube.delete_pod("ns", "p")
        kube.review_token("token", ["slotwise"])
    assert KeepAlive.requests == 30
    assert len(KeepAlive.connections) == 1


def test_as_many_writes_at_once_as_the_service_makes_keep_their_connections(api):
    """20 at once, three times over: the client's default pool (5 per CPU) threw away what did not
    fit in it after each round, and the next round opened (in a cluster, TLS-handshook) new ones."""
    kube = Kube.at(api)
    writers = 20
    start = threading.Barrier(writers, timeout=10)

    def write() -> None:
        for _ in range(3):
            start.wait()
            kube.patch_pod("ns", "p", [{"op": "remove", "path": "/spec/schedulingGates/0"}])

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert KeepAlive.requests == 3 * writers
    assert len(KeepAlive.connections) <= writers
