"""Fixtures and helpers for the quota store, API, CLI and concurrency tests.

Test modules load this with ``pytest_plugins = ["tests.quota_fixtures"]`` and import its helpers,
so it is imported before pytest could rewrite it: PYTEST_DONT_REWRITE (it asserts nothing).

``database_url`` runs a test on SQLite (a file in tmp_path) and on PostgreSQL. The PostgreSQL
variant needs ``SLOTWISE_TEST_POSTGRES_URL`` (for example
``postgresql://slotwise:slotwise@127.0.0.1:5432/slotwise_test``): a role that may CREATEDB and a
database it can connect to; each test gets a fresh database of its own, dropped afterwards. Unset,
the variant is skipped; set but unreachable, the test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from sqlalchemy import Engine, create_engine, make_url, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from quota.admission import Request
from quota.config import config_from_yaml
from quota.store import Store
from quota.store import database_url as driver_url
from quota.store.schema import Base
from scheduler.model.resources import Resources
from tests.processes import free_port, stop

POSTGRES_ENV = "SLOTWISE_TEST_POSTGRES_URL"
ACTOR = "tester"

#: nlp and vision share ai's 8 GPUs (nlp lends 2, vision 4); solo has exactly one GPU that nobody
#: lends to it; spare is public (takes no work of its own).
SCENARIO = """
reclaim: {grace: 30s, min_loan: 0s}
pools:
- name: ai
  pools:
  - name: nlp
    description: language models
    guaranteed: {nvidia.com/gpu: 4, cpu: 16}
    shareable: {nvidia.com/gpu: 2}
  - name: vision
    guaranteed: {nvidia.com/gpu: 4, cpu: 16}
    shareable: {nvidia.com/gpu: 4}
- name: solo
  guaranteed: {nvidia.com/gpu: 1}
- name: spare
  public: true
"""


#: The README's example pools (research: nlp, vision; product: speech, recsys).
EXAMPLE_POOLS = Path(__file__).resolve().parents[1] / "docs" / "examples" / "pools.yaml"


def without_research() -> str:
    """The example pools with research removed and its children, nlp and vision, moved to the top."""
    document = yaml.safe_load(EXAMPLE_POOLS.read_text())
    research = document["pools"].pop(0)
    document["pools"][:0] = research["pools"]
    return yaml.safe_dump(document, sort_keys=False)


def scenario():
    return config_from_yaml(SCENARIO)


def gpu_request(key: str, pool: str, gpus: float, priority: int = 0) -> Request:
    return Request(key, pool, Resources({"nvidia.com/gpu": int(gpus * 1000)}), priority)


# Databases ------------------------------------------------------------------------------------
def postgres_database(base: str) -> Iterator[str]:
    """A fresh database on the server of ``base`` (a URL), dropped afterwards."""
    maintenance = create_engine(driver_url(base), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"slotwise_t_{uuid.uuid4().hex[:16]}"
    try:
        with maintenance.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.fail(f"{POSTGRES_ENV} is set but PostgreSQL is unreachable or refuses: {exc}", pytrace=False)
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(maintenance, name)
        maintenance.dispose()


def _drop(maintenance: Engine, name: str, attempts: int = 50) -> None:
    """``WITH (FORCE)`` ends the test's own sessions, but PostgreSQL refuses it while an
    autovacuum worker (of no role of ours) is on the database: that ends in moments, so again."""
    for attempt in range(attempts):
        try:
            with maintenance.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError as exc:
            if attempt == attempts - 1 or "pg_signal_backend" not in str(exc):
                raise
            time.sleep(0.1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database (no schema yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'quota.db'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL variant: set {POSTGRES_ENV}=postgresql://USER:PASSWORD@HOST:PORT/DB "
                    "(a role with CREATEDB); .ci/run does")
    yield from postgres_database(base)


@pytest.fixture
def store(database_url) -> Iterator[Store]:
    """A migrated, empty store."""
    s = Store(database_url)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def loaded(store) -> Store:
    """The store with the scenario imported."""
    store.replace_config(scenario(), ACTOR)
    return store


def db_state(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to compare before and after a refused change."""
    with store.engine.connect() as c:
        return {t.name: sorted((tuple(r) for r in c.execute(select(t))), key=repr) for t in Base.metadata.sorted_tables}


# Servers --------------------------------------------------------------------------------------
def wait_healthy(base: str, alive=lambda: True, timeout: float = 20.0) -> None:
    """Bounded polling of /healthz while a server starts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server for {base} exited while starting")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{base} did not answer /healthz within {timeout}s")


@contextmanager
def sqlite_store(tmp_path: Path, pools: str) -> Iterator[Store]:
    """A migrated SQLite store holding the pools of ``pools`` (YAML), closed afterwards."""
    store = Store(f"sqlite:///{tmp_path / 'quota.db'}")
    store.migrate()
    store.replace_config(config_from_yaml(pools), "test")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """The app under a real uvicorn server on 127.0.0.1, in a background thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, thread.is_alive)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_in_subprocess(url: str, *options: str) -> Iterator[str]:
    """``slotwise serve`` with ``options`` in a process of its own, on the database at ``url``."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "slotwise.cli", "serve", "--db", url, "--port", str(port), *options],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(base, lambda: process.poll() is None)
        except (RuntimeError, TimeoutError):
            process.kill()
            raise RuntimeError(f"slotwise serve failed: {process.communicate()[1].decode()[-2000:]}") from None
        yield base
    finally:
        stop(process)
