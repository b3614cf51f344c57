"""A real Prometheus server on loopback, for tests of the utilisation queries.

Test modules load this with ``pytest_plugins = ["tests.prometheus_server"]``. The ``prometheus``
fixture is a function: give it the ``host:port`` targets to scrape (every second) and it returns
the server's URL once Prometheus is ready; the server and its temporary TSDB go at teardown.
Without ``/usr/bin/prometheus`` (Debian's ``prometheus`` package) the test is skipped, unless
``SLOTWISE_REQUIRE_PROMETHEUS=1``, as CI sets it, which makes the absence a failure.

PYTEST_DONT_REWRITE: imported before pytest could rewrite it (it asserts nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port, stop

REQUIRE_ENV = "SLOTWISE_REQUIRE_PROMETHEUS"
BINARY = os.environ.get("SLOTWISE_PROMETHEUS_BINARY", "/usr/bin/prometheus")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls ``check`` until it holds; fails the test, naming ``what``, after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _binary() -> str:
    found = shutil.which(BINARY)
    if found is None:
        message = f"{BINARY} not found: apt-get install prometheus"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(message)
    return found


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], str]]:
    binary = _binary()
    started: list[subprocess.Popen] = []

    def start(targets: list[str]) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        quoted = ", ".join(f'"{t}"' for t in targets)
        config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                          f"scrape_configs:\n- job_name: test\n  static_configs:\n  - targets: [{quoted}]\n")
        with (tmp_path / "prometheus.log").open("w") as log:
            started.append(subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url) or started[-1].poll() is not None, 20, "Prometheus to start")
        if started[-1].poll() is not None:
            pytest.fail(f"Prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
        return url

    yield start
    for process in started:
        stop(process)
