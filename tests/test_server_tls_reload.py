"""The serving certificate follows its files: ``slotwise serve`` presents a renewed certificate on
the next handshake, keeps the old one while a pair is half written, and refuses bad TLS
arguments in one line."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from typer.testing import CliRunner

from slotwise.cli import app
from slotwise.server.tls import ReloadingContext
from tests.conftest import Clock
from tests.processes import free_port, stop

SERVICE = "slotwise.slotwise-system.svc"


def issue() -> tuple[trustme.CA, trustme.LeafCert]:
    ca = trustme.CA()  # a new CA each time: a renewed self-signed Certificate has a new key
    return ca, ca.issue_cert(SERVICE)


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def write_secret(volume: Path, cert: trustme.LeafCert, generation: int) -> None:
    """Update ``volume`` as the kubelet updates a Secret volume: the files go into a new directory,
    the ``..data`` symlink is swapped to it atomically, and ``tls.crt``/``tls.key`` link through it."""
    directory = volume / f"..generation_{generation}"
    directory.mkdir()
    cert.cert_chain_pems[0].write_to_path(directory / "tls.crt")
    cert.private_key_pem.write_to_path(directory / "tls.key")
    (volume / "..data_tmp").symlink_to(directory.name)
    os.replace(volume / "..data_tmp", volume / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (volume / name).is_symlink():
            (volume / name).symlink_to(f"..data/{name}")


def presented(port: int, server_name: str | None) -> bytes:
    """The certificate the server at ``port`` presents in a fresh handshake."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            client.wrap_socket(raw, server_hostname=server_name) as tls:
        return tls.getpeercert(binary_form=True)


def healthz(port: int, ca: trustme.CA) -> int:
    """GET /healthz, verifying the server for the service name against ``ca``."""
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    with httpx.Client(verify=trust) as client:
        return client.get(f"https://127.0.0.1:{port}/healthz", extensions={"sni_hostname": SERVICE}).status_code


@pytest.fixture
def volume(tmp_path) -> Path:
    (tmp_path / "tls").mkdir()
    return tmp_path / "tls"


@pytest.fixture
def served(tmp_path, volume) -> Iterator[tuple[int, trustme.CA, trustme.LeafCert]]:
    """``slotwise serve`` over TLS from the Secret-like ``volume``, and the pair it started with."""
    ca, cert = issue()
    write_secret(volume, cert, 1)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "slotwise.cli", "serve", "--db", f"sqlite:///{tmp_path / 'q.db'}",
                                "--port", str(port), "--tls-cert", str(volume / "tls.crt"), "--tls-key", str(volume / "tls.key")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                presented(port, SERVICE)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stop(process)
                    raise RuntimeError(f"slotwise serve failed: {process.communicate()[1].decode()[-2000:]}") from None
                time.sleep(0.1)
        yield port, ca, cert
    finally:
        stop(process)


def test_a_renewed_certificate_is_presented_without_a_restart(served, volume):
    port, old_ca, old = served
    assert presented(port, SERVICE) == presented(port, None) == der(old)
    assert healthz(port, old_ca) == 200
    new_ca, new = issue()
    write_secret(volume, new, 2)
    deadline = time.monotonic() + 20
    while presented(port, None) != der(new):  # no server name: kube-scheduler dialling an address sends none
        assert time.monotonic() < deadline, "the renewed certificate was never presented"
        time.sleep(0.2)
    assert presented(port, SERVICE) == der(new)
    assert healthz(port, new_ca) == 200


def handshake(context: ssl.SSLContext, server_name: str | None = SERVICE, client: trustme.LeafCert | None = None) -> bytes:
    """A TLS handshake in memory against ``context``, presenting ``client``'s certificate if
    given (over TLS 1.2, where the server checks it before the handshake ends; raises SSLError
    if refused); the certificate the server presented."""
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname, client_context.verify_mode = False, ssl.CERT_NONE
    if client is not None:
        client_context.maximum_version = ssl.TLSVersion.TLSv1_2
        client.configure_cert(client_context)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server, server_hostname=server_name)
    server = context.wrap_bio(to_server, to_client, server_side=True)
    pending = [client, server]
    for _ in range(10):
        for side in list(pending):
            try:
                side.do_handshake()
                pending.remove(side)
            except ssl.SSLWantReadError:
                pass
        if not pending:
            return client.getpeercert(binary_form=True)
    raise AssertionError("the handshake did not finish")


def write_pair(directory: Path, cert: trustme.LeafCert, key: trustme.LeafCert) -> None:
    cert.cert_chain_pems[0].write_to_path(directory / "tls.crt")
    key.private_key_pem.write_to_path(directory / "tls.key")


def test_a_half_written_pair_keeps_the_old_certificate_until_the_key_arrives(tmp_path, caplog):
    _, old = issue()
    _, new = issue()
    write_pair(tmp_path, old, old)
    clock = Clock()
    tls = ReloadingContext(tmp_path / "tls.crt", tmp_path / "tls.key", check_every=5, clock=clock)
    assert handshake(tls.context) == handshake(tls.context, None) == der(old)

    write_pair(tmp_path, new, old)  # the new certificate is written, its key not yet
    with caplog.at_level(logging.INFO, logger="slotwise.server.tls"):
        for _ in range(3):
            clock.now += 5
            assert handshake(tls.context) == der(old)
    assert [r.getMessage() for r in caplog.records] == \
        [f"keeping the certificate in use: the key {tmp_path / 'tls.key'} does not match the certificate {tmp_path / 'tls.crt'}"]

    (tmp_path / "tls.key").unlink()  # mid-swap
    clock.now += 5
    assert handshake(tls.context) == der(old)

    write_pair(tmp_path, new, new)
    clock.now += 4  # looked at most every check_every seconds
    assert handshake(tls.context) == der(old)
    clock.now += 1
    assert handshake(tls.context, None) == handshake(tls.context) == der(new)


runner = CliRunner()


@pytest.fixture
def pem(tmp_path) -> dict[str, Path]:
    _, one = issue()
    _, other = issue()
    files = {"cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem", "other-key": tmp_path / "other-key.pem"}
    one.cert_chain_pems[0].write_to_path(files["cert"])
    one.private_key_pem.write_to_path(files["key"])
    other.private_key_pem.write_to_path(files["other-key"])
    return files


@pytest.mark.parametrize(("options", "message"), [
    (["--tls-cert", "{tmp}/missing.pem", "--tls-key", "{key}"], "{tmp}/missing.pem: no such file"),
    (["--tls-cert", "{cert}", "--tls-key", "{tmp}/missing.pem"], "{tmp}/missing.pem: no such file"),
    (["--tls-cert", "{tmp}", "--tls-key", "{key}"], "cannot read {tmp}: Is a directory"),
    (["--tls-cert", "{cert}"], "give both --tls-cert and --tls-key, or neither"),
    (["--tls-key", "{key}"], "give both --tls-cert and --tls-key, or neither"),
    (["--tls-cert", "{cert}", "--tls-key", "{other-key}"], "the key {other-key} does not match the certificate {cert}"),
    (["--tls-cert", "{key}", "--tls-key", "{key}"], "{key} holds no PEM certificate"),
    (["--tls-cert", "{cert}", "--tls-key", "{cert}"], "{cert} holds no PEM private key"),
    (["--client-ca", "{cert}"], "--client-ca needs --tls-cert and --tls-key: client certificates are checked over TLS"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--client-ca", "{key}"], "{key} holds no PEM certificate"),
    *((["--host", host], f"refusing plain HTTP on {host}: the webhooks, the extender and the API's bearer tokens would "
                         "cross the network readable and forgeable; give --tls-cert and --tls-key, or --insecure-http "
                         "behind a proxy that terminates TLS") for host in ("0.0.0.0", "10.0.0.7", "::", "slotwise.example")),
])
def test_bad_tls_arguments_and_plain_http_off_loopback_are_one_line_and_exit_2(tmp_path, pem, options, message):
    names = {"tmp": tmp_path, **pem}
    result = runner.invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'q.db'}", *(o.format(**names) for o in options)])
    assert result.exit_code == 2, result.output
    assert result.output == f"error: {message.format(**names)}\n"
    assert not (tmp_path / "q.db").exists()  # refused before anything was started or written


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("0.0.0.0", False), ("slotwise.example", False)])
def test_only_loopback_serves_plain_http_without_the_flag(host, loopback):
    from slotwise.commands.serve import _loopback

    assert _loopback(host) is loopback


def test_insecure_http_lets_plain_http_off_loopback_start(tmp_path):
    # Past the refusal, the next step fails: the database (the discard port) cannot be reached.
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--insecure-http", "--db", "postgresql://u:p@127.0.0.1:9/x"])
    assert result.exit_code == 2 and result.output.startswith("database error:"), result.output
