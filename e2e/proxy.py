"""A TCP proxy on loopback, for the end-to-end tests: the Service in front of slotwise's replicas
(each new connection goes to the next backend that accepts, as kube-proxy spreads them), and the
network faults between slotwise and what it depends on (``cut`` drops every open connection
mid-stream; ``refusing`` closes new ones at once, as a stopped database does)."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading


class Proxy:
    def __init__(self, backends: list[int] | None = None):
        self.backends = list(backends or [])
        self.refusing = False
        self.cuts = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._turn = itertools.count()
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    def cut(self) -> None:
        """Drop every open connection, both ways, as a network fault would."""
        with self._lock:
            doomed, self._open = self._open, set()
            self.cuts += 1
        for s in doomed:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._server.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        upstream = None if self.refusing else self._upstream()
        if upstream is None:
            client.close()
            return
        # Without it each reply written in two pieces (headers, then body) waited for the first
        # piece's delayed ACK: Nagle's algorithm, 40 ms on loopback, on every webhook and extender
        # call. kube-proxy forwards in the kernel and adds nothing of the kind.
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open |= {client, upstream}
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _upstream(self) -> socket.socket | None:
        start = next(self._turn)
        backends = list(self.backends)
        for k in range(len(backends)):
            with contextlib.suppress(OSError):
                return socket.create_connection(("127.0.0.1", backends[(start + k) % len(backends)]), timeout=2)
        return None

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            source.settimeout(None)
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):  # one side closed: close both, as a TCP proxy does
            with self._lock:
                self._open.discard(s)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
