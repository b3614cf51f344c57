"""The end-to-end tests' stand-in for a Service (e2e/proxy.py) forwards without delaying."""

from __future__ import annotations

import socket
import threading

from e2e.proxy import Proxy


def test_forwarded_connections_send_small_writes_at_once():
    """Nagle's algorithm off on both legs: with it, a reply written in two pieces (an HTTP
    server's headers, then its body) waited for a delayed ACK, 40 ms per webhook call."""
    backend = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def answer() -> None:
        conn, _ = backend.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"head")
            conn.sendall(b"body")
            done.wait(5)  # the connection stays open, as a kept-alive one does

    threading.Thread(target=answer, daemon=True).start()
    proxy = Proxy([backend.getsockname()[1]])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
            client.sendall(b"ask")
            received = b""
            while len(received) < 8:
                received += client.recv(64)
            assert received == b"headbody"
            legs = list(proxy._open)
            assert len(legs) == 2
            assert all(leg.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for leg in legs)
    finally:
        done.set()
        proxy.close()
        backend.close()
