"""``slotwise serve --client-ca``: the webhooks and the extender answer only callers presenting a
certificate the client CA signed, on their own port; the main port keeps the API, health and
metrics and refuses them with a 403 that says where to go. The CA bundle is followed like the
serving pair."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from slotwise.server.tls import ReloadingContext
from tests.conftest import Clock
from tests.processes import free_port, stop
from tests.test_server_tls_reload import handshake

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
RECORDED = ROOT / "tests" / "recorded"


@dataclass
class Served:
    main: int
    verified: int
    server_ca: trustme.CA
    folder: Path

    def client(self, port: int, cert: trustme.LeafCert | None = None) -> httpx.Client:
        trust = ssl.create_default_context()
        self.server_ca.configure_trust(trust)
        if cert is not None:
            cert.configure_cert(trust)
        return httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust, timeout=10)


def leaf(ca: trustme.CA, name: str, folder: Path) -> trustme.LeafCert:
    cert = ca.issue_cert(name, common_name=name)
    cert.cert_chain_pems[0].write_to_path(folder / f"{name}.crt")
    cert.private_key_pem.write_to_path(folder / f"{name}.key")
    return cert


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def served(tmp_path_factory, client_ca) -> Iterator[Served]:
    """A dry run over recorded objects, serving TLS, with ``client_ca`` as its client CA."""
    folder = tmp_path_factory.mktemp("client-certs")
    server_ca = trustme.CA()
    leaf(server_ca, "127.0.0.1", folder)
    client_ca.cert_pem.write_to_path(folder / "client-ca.crt")
    main, verified = free_port(), free_port()
    process = subprocess.Popen([
        sys.executable, "-m", "slotwise.cli", "serve", "--db", f"sqlite:///{folder / 'q.db'}", "--port", str(main),
        "--tls-cert", str(folder / "127.0.0.1.crt"), "--tls-key", str(folder / "127.0.0.1.key"),
        "--client-ca", str(folder / "client-ca.crt"), "--client-cert-port", str(verified), "--managed", "nlp",
        "--nodes", str(RECORDED / "nodes.json"), "--pods", str(RECORDED / "pods.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    served = Served(main, verified, server_ca, folder)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with served.client(main) as http:
                    http.get("/healthz")
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stop(process)
                    raise RuntimeError(f"slotwise serve failed: {process.communicate()[1].decode()[-2000:]}") from None
                time.sleep(0.1)
        yield served
    finally:
        stop(process)


def review() -> dict:
    return json.loads((EXAMPLES / "admission-review.json").read_text())


def test_a_verified_caller_reaches_the_webhooks_and_the_extender(served, client_ca):
    apiserver = leaf(client_ca, "kube-apiserver", served.folder)
    with served.client(served.verified, apiserver) as http:
        response = http.post("/webhooks/mutate", json=review()).json()["response"]
        assert response["allowed"] and response["uid"] == review()["request"]["uid"]
        filtered = http.post("/extender/filter", content=(EXAMPLES / "extender-filter.json").read_bytes()).json()
        assert filtered["NodeNames"] == ["gpu-a1", "gpu-b1"]


def test_the_main_port_refuses_the_webhooks_and_the_extender_and_serves_the_rest(served, client_ca):
    apiserver = leaf(client_ca, "kube-apiserver", served.folder)
    with served.client(served.main, apiserver) as http:  # a certificate is not asked for here: it changes nothing
        for path, body in (("/webhooks/mutate", review()), ("/webhooks/validate", review()),
                           ("/extender/filter", json.loads((EXAMPLES / "extender-filter.json").read_text()))):
            refused = http.post(path, json=body)
            assert refused.status_code == 403, path
            assert refused.json()["detail"] == (f"the webhooks and the extender answer on port {served.verified} only, "
                                                "to callers presenting a client certificate the service's client CA signed")
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/quota/pools").status_code == 401  # the API: its own bearer tokens


@pytest.mark.parametrize("caller", ["none", "another CA"])
def test_an_unverified_caller_does_not_get_past_the_handshake(served, caller):
    cert = leaf(trustme.CA(), "intruder", served.folder) if caller == "another CA" else None
    with served.client(served.verified, cert) as http, pytest.raises(httpx.TransportError):
        http.post("/webhooks/mutate", json=review())


def test_a_renewed_client_ca_is_followed_without_a_restart(tmp_path):
    leaf(trustme.CA(), "slotwise", tmp_path)  # the serving pair
    old_ca, new_ca = trustme.CA(), trustme.CA()
    old_client, new_client = leaf(old_ca, "old", tmp_path), leaf(new_ca, "new", tmp_path)
    old_ca.cert_pem.write_to_path(tmp_path / "client-ca.crt")
    clock = Clock()
    tls = ReloadingContext(tmp_path / "slotwise.crt", tmp_path / "slotwise.key", check_every=5, clock=clock,
                           client_ca=tmp_path / "client-ca.crt")
    handshake(tls.context, client=old_client)
    with pytest.raises(ssl.SSLError):
        handshake(tls.context, client=new_client)

    new_ca.cert_pem.write_to_path(tmp_path / "client-ca.crt")  # the CA Secret renewed
    clock.now += 5
    handshake(tls.context, client=new_client)
    with pytest.raises(ssl.SSLError):
        handshake(tls.context, client=old_client)


def test_an_idle_keep_alive_connection_is_not_closed_under_the_caller(served):
    """kube-apiserver's Go transport reuses a connection idle for up to 90 s. The service keeps it
    longer (uvicorn's default closed it after 5 s, and a request sent as it closed failed: EOF)."""
    trust = ssl.create_default_context()
    served.server_ca.configure_trust(trust)
    connection = http.client.HTTPSConnection("127.0.0.1", served.main, context=trust, timeout=10)
    try:
        for pause in (0, 6):
            time.sleep(pause)
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b'{"status":"ok"}'
    finally:
        connection.close()
