"""The serving certificate, following its files: cert-manager rotates the Secret mounted behind
``--tls-cert``/``--tls-key``, and the webhooks and the extender must present the new pair without
a restart. With ``--client-ca`` a second listener also asks callers for a certificate that CA
signed (kube-apiserver calling the webhooks, kube-scheduler the extender), followed the same way."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0  # a renewal reaches the pod's volume within a minute or so; a look costs two small reads


class TLSFilesError(ValueError):
    """A certificate and key that cannot be served, said in one line."""


def _read(cert: Path, key: Path, client_ca: Path | None = None) -> tuple[bytes, ...]:
    contents = []
    for path in (cert, key) if client_ca is None else (cert, key, client_ca):
        try:
            contents.append(path.read_bytes())
        except FileNotFoundError:
            raise TLSFilesError(f"{path}: no such file") from None
        except OSError as exc:
            raise TLSFilesError(f"cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in contents[0]:
        raise TLSFilesError(f"{cert} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in contents[1]:
        raise TLSFilesError(f"{key} holds no PEM private key")
    if client_ca is not None and b"-----BEGIN CERTIFICATE-----" not in contents[2]:
        raise TLSFilesError(f"{client_ca} holds no PEM certificate")
    return tuple(contents)


def _context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(cafile=client_ca)
        except ssl.SSLError:
            raise TLSFilesError(f"{client_ca} does not load as PEM CA certificates") from None
    try:
        # The password callback makes an encrypted key fail here instead of prompting on the terminal.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSFilesError(f"the key {key} does not match the certificate {cert}") from None
        raise TLSFilesError(f"{cert} and {key} do not load as a PEM certificate and its unencrypted key") from None
    except OSError as exc:  # a file went away between the read and the load
        raise TLSFilesError(f"cannot read {cert} or {key}: {exc.strerror}") from None
    return context


class ReloadingContext:
    """``context`` is the server's ``SSLContext``; with ``client_ca`` it requires a client
    certificate that CA signed. OpenSSL calls its SNI callback on every
    handshake, also when the client sends no server name (``server_name`` is then None), so the
    callback looks at the files at most every ``check_every`` seconds and hands the handshake a
    context loaded from their current content. Contents are compared, not mtimes: a Kubernetes
    Secret volume updates by swapping a ``..data`` symlink. A pair that does not load (the key
    not yet written, say) keeps the previous one, is logged once, and is tried again when the
    files change. The handshake verifies the client against the store of the context it was
    handed, so a renewed CA bundle is followed the same way."""

    def __init__(self, cert: Path, key: Path, check_every: float = CHECK_EVERY_S,
                 clock: Callable[[], float] = time.monotonic, client_ca: Path | None = None):
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._check_every, self._clock = check_every, clock
        self._content = _read(cert, key, client_ca)
        self.context = _context(cert, key, client_ca)
        self.context.sni_callback = self._choose
        self._current = self.context
        self._next_check = clock() + check_every
        self._failed: tuple[tuple[bytes, ...] | None, str] | None = None

    def _choose(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        self.refresh()
        if connection.context is not self._current:
            connection.context = self._current

    def refresh(self) -> None:
        """Load the files if they changed and the last look is ``check_every`` seconds old."""
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self._check_every
        content = None
        try:
            content = _read(self.cert, self.key, self.client_ca)
            if content == self._content:
                return
            # The content read before loading: files changing in between are loaded again next time.
            self._current, self._content = _context(self.cert, self.key, self.client_ca), content
        except TLSFilesError as exc:
            if self._failed != (content, str(exc)):
                self._failed = (content, str(exc))
                log.warning("keeping the certificate in use: %s", exc)
            return
        self._failed = None
        log.info("serving the new certificate in %s", self.cert)


def serving_tls(cert: Path | None, key: Path | None) -> ReloadingContext | None:
    """What ``slotwise serve --tls-cert --tls-key`` serves with: None for plain HTTP."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise TLSFilesError("give both --tls-cert and --tls-key, or neither")
    return ReloadingContext(cert, key)


def verifying_tls(serving: ReloadingContext | None, client_ca: Path | None) -> ReloadingContext | None:
    """What the listener of ``serve --client-ca`` serves with: the same pair, callers verified."""
    if client_ca is None:
        return None
    if serving is None:
        raise TLSFilesError("--client-ca needs --tls-cert and --tls-key: client certificates are checked over TLS")
    return ReloadingContext(serving.cert, serving.key, client_ca=client_ca)
